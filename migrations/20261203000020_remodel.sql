-- Remodel re-registration (snapd's "re-registration remodel", PROTOCOL.md 4.3): a device
-- registered as one model asks for a serial of another, sending its current serial along.
-- A remodel policy allows the move; it belongs to the brand of the model devices move to.
CREATE TABLE remodel_policies (
    id              BIGSERIAL PRIMARY KEY,
    to_model_id     BIGINT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    -- The original serial's brand and model: any brand whose serials verify against the
    -- trusted roots and pushed account-keys, so neither is a foreign key.
    from_brand_id   TEXT NOT NULL CHECK (from_brand_id ~ '^(?:[a-z0-9A-Z]{32}|[-a-z0-9]{2,28})$'),
    from_model      TEXT NOT NULL CHECK (from_model ~ '^[a-zA-Z0-9](?:-?[a-zA-Z0-9])*$'),
    -- A regular expression the original serial number must match whole; NULL: any serial.
    serial_pattern  TEXT CHECK (serial_pattern IS NULL OR serial_pattern <> ''),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by      TEXT NOT NULL,
    CONSTRAINT remodel_policies_move_key UNIQUE (to_model_id, from_brand_id, from_model)
);

-- A serial issued on re-registration names the serial it replaces: its primary key
-- (`brand-id/model/serial`) always, and its signing-log row when this vault issued it.
ALTER TABLE signing_log
    ADD COLUMN original_serial TEXT,
    ADD COLUMN original_serial_id BIGINT REFERENCES signing_log (id) ON DELETE RESTRICT,
    ADD CONSTRAINT signing_log_original_check
        CHECK (original_serial_id IS NULL OR original_serial IS NOT NULL);
