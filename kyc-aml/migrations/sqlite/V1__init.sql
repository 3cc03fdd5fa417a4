-- kyc-aml store, SQLite. Ids are u64 stored bit-for-bit in INTEGER (64-bit); transfer ids (u128)
-- as decimal text; hashes and signatures as BLOB. Personal data only in customers.personal_json
-- and attestations.claims, both set to NULL by erasure.
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    cdd INTEGER NOT NULL,
    risk INTEGER NOT NULL,
    is_pep INTEGER NOT NULL,
    pep_left_office_us INTEGER,
    edd_signed_off INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    erased_at_us INTEGER,
    personal_json TEXT
);
CREATE TABLE tier_changes (
    customer INTEGER NOT NULL REFERENCES customers (id),
    seq INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    tier INTEGER NOT NULL,
    cdd INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (customer, seq)
);
CREATE TABLE attestations (
    customer INTEGER NOT NULL REFERENCES customers (id),
    claims_sha256 BLOB NOT NULL,
    issuer TEXT NOT NULL,
    assurance INTEGER NOT NULL,
    accepted_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    signature BLOB NOT NULL,
    claims BLOB,
    PRIMARY KEY (customer, claims_sha256)
);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,
    customer INTEGER NOT NULL,
    transfer_id TEXT,
    decision_hash BLOB,
    alert_codes TEXT NOT NULL,
    opened_at_us INTEGER NOT NULL,
    state INTEGER NOT NULL,
    assignee TEXT,
    hold INTEGER NOT NULL,
    closed_at_us INTEGER
);
CREATE INDEX cases_customer ON cases (customer);
CREATE TABLE case_notes (
    case_id INTEGER NOT NULL REFERENCES cases (id),
    seq INTEGER NOT NULL,
    author TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
);
CREATE TABLE case_attachments (
    case_id INTEGER NOT NULL REFERENCES cases (id),
    seq INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    uri TEXT NOT NULL,
    added_by TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    PRIMARY KEY (case_id, seq)
);
CREATE TABLE decisions (
    hash BLOB PRIMARY KEY,
    transfer_id TEXT NOT NULL,
    customer INTEGER NOT NULL,
    evaluated_at_us INTEGER NOT NULL,
    outcome INTEGER NOT NULL,
    record_json TEXT NOT NULL,
    signature BLOB NOT NULL,
    gate_key_id TEXT NOT NULL
);
CREATE INDEX decisions_customer ON decisions (customer);
CREATE INDEX decisions_transfer ON decisions (transfer_id);
