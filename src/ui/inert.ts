// Text read from files (run.json of a shared or downloaded run folder) on its way to a terminal:
// control characters are shown escaped (`\x1b`) instead of acting, so a crafted run.json cannot
// set the window title, clear the screen or move the cursor through `runs`, `show` or the live
// view. Tabs and the newlines that separate our own lines are kept.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g;

export function inert(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
