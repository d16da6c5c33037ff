import { describe, expect, it } from 'vitest';
import { editDistance, suggest } from '../../src/config/suggest.js';

describe('did-you-mean', () => {
  it('counts insertions, deletions, substitutions and neighbour swaps as one edit each', () => {
    expect(editDistance('learning_rat', 'learning_rate')).toBe(1);
    expect(editDistance('dop', 'dpo')).toBe(1);
    expect(editDistance('cosin', 'cosine')).toBe(1);
    expect(editDistance('abc', 'xyz')).toBe(3);
  });

  it('suggests close names and stays quiet for unrelated ones', () => {
    expect(suggest('dop', ['sft', 'dpo', 'grpo', 'rlhf'])).toBe('dpo');
    expect(suggest('rutime', ['runtime', 'model', 'data', 'stages'])).toBe('runtime');
    expect(suggest('num_gen', ['num_generations', 'beta'])).toBe('num_generations');
    expect(suggest('zzz', ['sft', 'dpo'])).toBeUndefined();
  });
});
