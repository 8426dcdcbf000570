-- Checkpoints are numbered 1, 2, ... per chain, and the number is part of the signed text, so
-- a checkpoint deleted from the middle of a copy shows as a gap (docs/EVIDENT-LOG.md).
ALTER TABLE log_checkpoints ADD COLUMN number BIGINT NOT NULL CHECK (number > 0);
ALTER TABLE log_checkpoints ADD CONSTRAINT log_checkpoints_number_key UNIQUE (chain, number);
