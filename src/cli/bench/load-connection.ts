/**
 * One bench connection's load and checks. Messages on a connection are numbered; echoes come
 * back in order on every transport, so the oldest message in flight is the one an echo must
 * match, and the in-flight messages are simply the numbers [acked, next). Send times live in a
 * ring of `window` slots: nothing grows with the run.
 *
 * Closed loop (no --rate): whenever echoes free the window, send that many at once; latency is
 * measured from the actual send. Fixed rate: message k of this connection is *intended* to leave
 * at start + phase + k / rate; it leaves at the first tick (or echo) after that time when the
 * window has room, and its latency is measured from the intended time, so time spent waiting
 * behind a slow server counts (coordinated omission correction, as in wrk2).
 */
import type { Histogram } from 'hdr-histogram-js';
import { recordMs } from './histogram.js';
import type { Link, LinkHandler } from './link.js';
import { countError, ErrorKind, type ErrorCounts } from './messages.js';
import { PayloadPattern } from './payload.js';

/** State shared by a thread's connections: the measured window, counters and histogram. */
export interface LoadShared {
  /** Local performance.now() times (ms). */
  measureAt: number;
  endAt: number;
  /** True once the run is over: no more sends. */
  stopping: boolean;
  echoedAll: number;
  sent: number;
  echoed: number;
  histogram: Histogram;
  errors: ErrorCounts;
  /** Called when a connection has nothing in flight after `stopping`, or has ended. */
  onIdle(conn: LoadConnection): void;
}

export class LoadConnection implements LinkHandler {
  link: Link | undefined = undefined;
  /** The connection is gone or finished: no more sends, no more counting. */
  done = false;
  private next = 0;
  private acked = 0;
  private readonly times: Float64Array;
  private readonly pattern: PayloadPattern;
  /** Rate mode: ms between this connection's messages, and the next one's intended time. */
  private readonly interval: number;
  private nextAt = 0;
  /** Time given to messages filled by the current send() (closed loop). */
  private sendTime = 0;

  constructor(
    readonly id: number,
    readonly size: number,
    private readonly window: number,
    /** This connection's rate, messages/s; 0: closed loop. */
    rate: number,
    private readonly shared: LoadShared,
  ) {
    this.times = new Float64Array(window);
    this.pattern = new PayloadPattern(size);
    this.interval = rate > 0 ? 1000 / rate : 0;
  }

  get inFlight(): number {
    return this.next - this.acked;
  }

  /** Rate mode: the first message is intended at `at` (ms, local clock). */
  startSchedule(at: number): void {
    this.nextAt = at;
  }

  /** Sends what is due: the free window (closed loop) or the messages whose time has come (rate). */
  pump(now: number): void {
    if (this.done || this.shared.stopping || this.link === undefined) return;
    let n = this.window - (this.next - this.acked);
    if (n <= 0) return;
    if (this.interval > 0) {
      const end = Math.min(now, this.shared.endAt);
      const due = this.nextAt <= end ? Math.floor((end - this.nextAt) / this.interval) + 1 : 0;
      if (due < n) n = due;
      if (n <= 0) return;
    }
    this.sendTime = now;
    this.link.send(n);
  }

  fill(dst: Buffer, at: number): void {
    const seq = this.next++;
    let t: number;
    if (this.interval > 0) {
      t = this.nextAt;
      this.nextAt += this.interval;
    } else t = this.sendTime;
    this.times[seq % this.window] = t;
    if (t >= this.shared.measureAt && t < this.shared.endAt) this.shared.sent++;
    this.pattern.write(seq, dst, at);
  }

  onEcho(buf: Buffer, start: number, end: number): void {
    if (this.done) return;
    if (this.acked === this.next) {
      countError(this.shared.errors, ErrorKind.UNEXPECTED, `connection ${this.id}: an echo arrived with no message in flight`);
      return;
    }
    const seq = this.acked++;
    const sentAt = this.times[seq % this.window] as number;
    const at = this.pattern.check(seq, buf, start, end);
    if (at !== -1) {
      const what =
        end - start !== this.size
          ? `${end - start} bytes instead of ${this.size}`
          : `byte ${at} is 0x${(buf[start + at] as number).toString(16).padStart(2, '0')}, expected another value`;
      countError(this.shared.errors, ErrorKind.MISMATCH, `connection ${this.id}, message ${seq}: ${what}`);
      return;
    }
    this.shared.echoedAll++;
    if (sentAt >= this.shared.measureAt && sentAt < this.shared.endAt) {
      this.shared.echoed++;
      recordMs(this.shared.histogram, performance.now() - sentAt);
    }
  }

  onUnexpected(what: string): void {
    if (!this.done) countError(this.shared.errors, ErrorKind.UNEXPECTED, `connection ${this.id}: ${what}`);
  }

  afterRead(): void {
    if (this.done) return;
    if (this.shared.stopping) {
      if (this.acked === this.next) this.finish();
      return;
    }
    this.pump(performance.now());
  }

  onEnd(kind: 'closed' | 'socket' | 'protocol', message: string): void {
    if (this.done) return;
    countError(this.shared.errors, kind, `connection ${this.id}: ${message}`);
    this.countLost();
    this.done = true;
    this.shared.onIdle(this);
  }

  /** After the drain deadline: whatever is still in flight is lost. */
  countLost(): void {
    const lost = this.next - this.acked;
    if (lost > 0) countError(this.shared.errors, ErrorKind.LOST, `connection ${this.id}: ${lost} message(s) without an echo`, lost);
    this.acked = this.next;
  }

  /** Nothing in flight after the run: close. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.link?.close();
    this.shared.onIdle(this);
  }
}
