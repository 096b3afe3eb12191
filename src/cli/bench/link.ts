/** The interface between a bench connection (what to send, how to check) and its transport. */

/** Implemented by the connection driving the load. */
export interface LinkHandler {
  /** Writes the next message's payload (`size` bytes) at `dst[at]` and marks it in flight. */
  fill(dst: Buffer, at: number): void;
  /** One data echo: its payload is `buf[start, end)` (valid only during the call). */
  onEcho(buf: Buffer, start: number, end: number): void;
  /** Something arrived that is not a data echo (a text message, a header, a hello...). */
  onUnexpected(what: string): void;
  /** Called after the echoes of one read: the time to send more. */
  afterRead(): void;
  /** The link is gone: closed by the server, a socket error, or bytes that do not parse. */
  onEnd(kind: 'closed' | 'socket' | 'protocol', message: string): void;
}

/** A connected transport. */
export interface Link {
  /** Sends `n` messages, asking the handler to fill each payload. */
  send(n: number): void;
  /** Closes the connection (normal closure); no more handler calls after this. */
  close(): void;
}
