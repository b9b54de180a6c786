/**
 * The listener set behind `Transport.onStatus`, shared by the adapters. An `error` event with
 * no listener is rethrown asynchronously, like an unhandled EventEmitter `error`.
 */
import type { Subscription, TransportStatus } from "./transport.js";

export class StatusListeners {
  #listeners = new Set<(status: TransportStatus) => void>();

  add(listener: (status: TransportStatus) => void): Subscription {
    const own = (status: TransportStatus) => listener(status);
    this.#listeners.add(own);
    return { unsubscribe: () => this.#listeners.delete(own) };
  }

  emit(status: TransportStatus): void {
    if (status.type === "error" && this.#listeners.size === 0) {
      const { error } = status;
      queueMicrotask(() => {
        throw error;
      });
      return;
    }
    for (const listener of [...this.#listeners]) {
      try {
        listener(status);
      } catch (err) {
        // A throwing listener must not break the adapter's status loop; surface it as uncaught.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
