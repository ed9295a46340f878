/**
 * A Ctrl-C (0x03) that arrives while nothing runs. A client sends it while it waits for a stop
 * reply; if the reply crossed it on the wire (a refused step is answered at once), the client
 * has already moved on, maybe to resume again. Dropping the byte would let a client that loops
 * on resumes never see its Ctrl-C; so the next resume packet, if it comes before anything
 * else, is answered with the SIGINT stop instead of running. Any other packet means the
 * client took the earlier stop as the end of its command: the Ctrl-C is then forgotten, so a
 * later `continue` is not stopped by a stale interrupt.
 *
 * @module
 */

/** Letters of the packets that resume the target. */
const RESUMES = /^(?:[cCsS]|vCont;)/;

export interface PendingInterrupt {
  /** A Ctrl-C arrived while nothing ran. */
  note(): void;
  /** A packet arrived: anything but a resume forgets the Ctrl-C. */
  seen(body: string): void;
  /** Whether a Ctrl-C is pending; it is consumed. */
  take(): boolean;
}

export function pendingInterrupt(): PendingInterrupt {
  let pending = false;
  return {
    note() {
      pending = true;
    },
    seen(body) {
      if (!RESUMES.test(body)) pending = false;
    },
    take() {
      const was = pending;
      pending = false;
      return was;
    },
  };
}
