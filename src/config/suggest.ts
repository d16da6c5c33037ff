// "Did you mean" for misspelt keys, flags and names.

/**
 * Edit distance counting a swap of two neighbours as one edit (optimal string alignment), so
 * `dop` → `dpo` is one typo, with an early exit once a whole row exceeds `max`.
 */
export function editDistance(a: string, b: string, max = Infinity): number {
  if (a === b) return 0;
  let prevPrev: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prevPrev[j - 2]! + 1);
      cur.push(v);
      rowMin = Math.min(rowMin, v);
    }
    if (rowMin > max) return rowMin;
    prevPrev = prev;
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest candidate, if it is close enough to be a plausible typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase(), bestDist);
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  // Allow roughly one typo per four characters, at least one.
  const allowed = Math.max(1, Math.floor(word.length / 4));
  if (best !== undefined && bestDist <= allowed) return best;
  // A prefix or substring match catches abbreviations (`lr` is not one, `num_gen` is).
  return candidates.find((c) => c.startsWith(word) || (word.length >= 4 && c.includes(word)));
}

export function didYouMean(word: string, candidates: readonly string[]): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` Did you mean "${s}"?`;
}
