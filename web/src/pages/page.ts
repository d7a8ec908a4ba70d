// The contract between the router and a page.
export interface Page {
  /** The page's root element (put in <main> by the router). */
  el: HTMLElement;
  /** Live-event topics whose change makes the page fetch its data again. */
  topics: string[];
  /** Whether the 10 s fallback poll refreshes the page. */
  poll: boolean;
  /** Fetches the page's data and updates the DOM. */
  refresh(): Promise<void>;
  /** Stops the page's timers. */
  destroy?(): void;
}

/** Wraps a refresh so that calls never overlap: one that comes during a fetch runs after it. */
export function serial(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  const run = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await fn();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}
