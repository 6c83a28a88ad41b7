// @ts-check
// The panel's one-way flow: an action calls set() with the fields it
// changes; each view registered with on() runs when a field it reads
// changed, in registration order; then the URL follows. Views never call
// each other. A view's async work is cancelled in one place: the Latest it
// holds says whether a newer update of the same view has started since.

/**
 * How the URL follows a change: "push" a history entry (the user opened a
 * run, layer, step, channel or view), "replace" the current one (an
 * in-between state: a slider drag, a colour choice), or "none" (the change
 * came from the URL).
 * @typedef {"push" | "replace" | "none"} History
 */

/**
 * @template S
 * @typedef {(changed: Set<keyof S>) => unknown} Reaction
 */

/** @template {object} S */
export class Store {
  /** @param {S} state */
  constructor(state) {
    /** The state, read by everyone, written only through set() and correct(). */
    this.state = state;
    /** @type {{reads: Set<keyof S>, react: Reaction<S>}[]} */
    this.views = [];
    /** @type {(how: History) => void} */
    this.follow = () => {};
  }

  /**
   * Registers a view: `react` runs with the changed fields when any of
   * `reads` changes.
   * @param {(keyof S)[]} reads @param {Reaction<S>} react
   */
  on(reads, react) {
    this.views.push({ reads: new Set(reads), react });
  }

  /**
   * Applies `patch`; the views that read a changed field react, then the URL
   * follows. Resolves when every view that reacted has settled.
   * @param {Partial<S>} patch @param {History} how
   * @returns {Promise<unknown>}
   */
  set(patch, how) {
    /** @type {Set<keyof S>} */
    const changed = new Set();
    for (const k of /** @type {(keyof S)[]} */ (Object.keys(patch))) {
      const v = /** @type {S[keyof S]} */ (patch[k]);
      if (this.state[k] !== v) {
        this.state[k] = v;
        changed.add(k);
      }
    }
    if (!changed.size) return Promise.resolve();
    const done = [];
    for (const v of this.views) {
      if ([...changed].some((k) => v.reads.has(k))) done.push(v.react(changed));
    }
    if (how !== "none") this.follow(how);
    return Promise.all(done);
  }

  /**
   * Corrects fields to what the data allows (a probe or channel that does not
   * exist, a colormap the server lacks) without making views react: the view
   * correcting them is drawing already. The URL follows.
   * @param {Partial<S>} patch
   */
  correct(patch) {
    Object.assign(this.state, patch);
    this.follow("replace");
  }
}

/**
 * The newest update of one view: begin() starts one and returns a check that
 * turns true once a newer one has begun (so an answer that arrived for a
 * state no longer shown is dropped).
 */
export class Latest {
  constructor() {
    this.n = 0;
  }

  /** @returns {() => boolean} stale */
  begin() {
    const mine = ++this.n;
    return () => mine !== this.n;
  }

  /** @returns {() => boolean} stale, for work following the current update */
  current() {
    const mine = this.n;
    return () => mine !== this.n;
  }
}
