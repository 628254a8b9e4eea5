-- Witness cosignatures (C2SP tlog-cosignature) on signed checkpoints: one per witness and tree
-- size. Each is checkable by anyone with the witness's public key, so nothing here is trusted
-- as stored: verification checks every line again.
CREATE TABLE cosignatures (
    witness    TEXT NOT NULL,
    size       INTEGER NOT NULL,
    line       TEXT NOT NULL,
    signed_s   INTEGER NOT NULL,
    PRIMARY KEY (witness, size)
) STRICT;
