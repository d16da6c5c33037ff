// The wire's message catalogue in two languages: what the sidecar sends must be what the
// controller decodes (src/bridge/protocol.ts INCOMING + event.metrics), and what the controller
// sends must be what the sidecar handles (sidecar/posttrain_sidecar/protocol.py).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { OUTGOING, SIDECAR_SENDS } from '../../src/bridge/protocol.js';
import { DEFAULT_VENV_PYTHON } from '../../src/paths.js';

describe('message catalogue', () => {
  it('both sides name the same message types in each direction', () => {
    const py = JSON.parse(
      execFileSync(DEFAULT_VENV_PYTHON, ['-c', 'import json; from posttrain_sidecar import protocol as p; print(json.dumps({"sidecar": list(p.SIDECAR_SENDS), "controller": list(p.CONTROLLER_SENDS)}))'], { encoding: 'utf8' }),
    ) as { sidecar: string[]; controller: string[] };
    expect([...py.sidecar].sort()).toEqual([...SIDECAR_SENDS].sort());
    expect([...py.controller].sort()).toEqual(Object.values(OUTGOING).sort());
  });
});
