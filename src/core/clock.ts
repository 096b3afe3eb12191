/**
 * The core's one clock. Every deadline (idle, keepalive, stall, hello, closing, token expiry)
 * and every timer of the message path (rate-limit resumes) reads it, so unit tests drive time
 * with a `ManualClock` instead of waiting.
 */

/** Wall-clock milliseconds and one-shot timers. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Runs `fn` after `ms`; returns a cancel function. The timer never keeps the process alive. */
  schedule(fn: () => void, ms: number): () => void;
}

function cancelTimer(this: NodeJS.Timeout): void {
  clearTimeout(this);
}

/** The real clock: `Date.now()` and unref'ed `setTimeout`s. */
export const systemClock: Clock = Object.freeze({
  now: Date.now,
  schedule(fn: () => void, ms: number): () => void {
    const t = setTimeout(fn, ms);
    t.unref();
    return cancelTimer.bind(t);
  },
});

/** A clock that moves only when told to (tests). */
export class ManualClock implements Clock {
  private timers: { at: number; fn: () => void; seq: number }[] = [];
  private seq = 0;

  constructor(private time = 1_700_000_000_000) {}

  now(): number {
    return this.time;
  }

  schedule(fn: () => void, ms: number): () => void {
    const timer = { at: this.time + Math.max(0, ms), fn, seq: this.seq++ };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward by `ms`, running due timers in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = end;
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.timers.length;
  }
}
