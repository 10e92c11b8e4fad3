-- Instant reclaim and learned KV reservations (docs/SIDECAR.md, "Reclaim"): each limit update
-- may carry the learned output length the sidecars reserve KV for (NULL: the worker published
-- none, and max_tokens is reserved). Preempted requests need no column: their phase is the
-- string 'preempted' in `requests`, with the wasted tokens as completion_tokens.
ALTER TABLE limits ADD COLUMN IF NOT EXISTS predicted_output_tokens Nullable(UInt32) AFTER limit_conc;
