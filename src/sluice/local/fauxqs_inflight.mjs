// Preloaded into the local SQS emulator (node --import): fauxqs 1.9.2 looks at every
// in-flight message for an expired visibility timeout on each ReceiveMessage (and every
// 20 ms while a long poll waits), so a receive costs O(messages in flight). A worker that
// holds a Redshift-sized batch while others load keeps 40,000-80,000 in flight, and the
// emulator then spends twice the CPU per message it spends with none in flight
// (docs/performance.md). Real SQS has no such cost.
//
// This keeps a lower bound on the earliest visibility deadline and hides the in-flight map
// from fauxqs's scan until that bound is reached; then the scan runs as before and the bound
// is recomputed. Every path that adds an in-flight entry or moves its deadline (dequeue,
// dequeueFifo, changeVisibility) lowers the bound, so expiry is seen exactly when it was.
// If fauxqs's internals are not the expected ones, nothing is changed.
import { pathToFileURL } from "node:url";

const store = new URL("./sqs/sqsStore.js", pathToFileURL(process.argv[1]));
const { SqsQueue } = await import(store.href);
const proto = SqsQueue?.prototype;
const methods = ["processTimers", "dequeue", "dequeueFifo", "changeVisibility"];

if (proto && methods.every((name) => typeof proto[name] === "function")) {
  const EMPTY = new Map();
  const original = Object.fromEntries(methods.map((name) => [name, proto[name]]));

  const lower = (queue, receiptHandle) => {
    const entry = queue.inflightMessages.get(receiptHandle);
    if (entry && !(entry.visibilityDeadline >= queue.earliestDue)) {
      queue.earliestDue = entry.visibilityDeadline;
    }
  };

  proto.processTimers = function processTimers() {
    if (Date.now() < this.earliestDue) {
      const inflight = this.inflightMessages;
      this.inflightMessages = EMPTY; // nothing is due: the delayed messages still move
      try {
        return original.processTimers.call(this);
      } finally {
        this.inflightMessages = inflight;
      }
    }
    const result = original.processTimers.call(this);
    let earliest = Infinity;
    for (const entry of this.inflightMessages.values()) {
      if (entry.visibilityDeadline < earliest) earliest = entry.visibilityDeadline;
    }
    this.earliestDue = earliest;
    return result;
  };

  for (const name of ["dequeue", "dequeueFifo"]) {
    proto[name] = function (...args) {
      const received = original[name].apply(this, args);
      for (const message of received) lower(this, message.ReceiptHandle);
      return received;
    };
  }

  proto.changeVisibility = function changeVisibility(receiptHandle, timeoutSeconds) {
    const result = original.changeVisibility.call(this, receiptHandle, timeoutSeconds);
    lower(this, receiptHandle);
    return result;
  };
  console.error("fauxqs_inflight: in-flight index installed");
} else {
  console.error("fauxqs_inflight: fauxqs internals changed; in-flight index not installed");
}
