// What a synchronous pipeline stage returns besides 0 (pass) and an error id.

/** The stage took the exchange over: it answered it, or it will resume the pipeline later
 * (pipeline.continueFrom). The pipeline must not touch the exchange again. */
export const TAKEN = -1;
