/**
 * NATS subject rules, for the in-memory twin and for argument checks: subjects are
 * dot-separated non-empty tokens without whitespace; `*` (a whole token) matches one token
 * and `>` (the last token) matches one or more.
 */

const WHITESPACE = /\s/;

/** True for a subject a message can be published to (no wildcards). */
export function isPublishSubject(subject: string): boolean {
  if (subject.length === 0 || WHITESPACE.test(subject)) return false;
  for (const t of subject.split(".")) {
    if (t.length === 0 || t === "*" || t === ">") return false;
  }
  return true;
}

/** True for a subject a subscription may use, wildcards included. */
export function isSubscribeSubject(subject: string): boolean {
  if (subject.length === 0 || WHITESPACE.test(subject)) return false;
  const tokens = subject.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.length === 0 || (t === ">" && i !== tokens.length - 1)) return false;
  }
  return true;
}

/** True when `subject` (no wildcards) matches `pattern` (wildcards allowed). */
export function subjectMatches(pattern: readonly string[], subject: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === ">") return subject.length > i;
    if (i >= subject.length || (p !== "*" && p !== subject[i])) return false;
  }
  return pattern.length === subject.length;
}
