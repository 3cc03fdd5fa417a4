-- kyc-aml store, PostgreSQL. Ids are u64 stored bit-for-bit in BIGINT; transfer ids (u128)
-- as decimal text; hashes and signatures as BYTEA. Personal data only in customers.personal_json
-- and attestations.claims, both set to NULL by erasure.
CREATE TABLE customers (
    id BIGINT PRIMARY KEY,
    kind BIGINT NOT NULL,
    cdd BIGINT NOT NULL,
    risk BIGINT NOT NULL,
    is_pep BIGINT NOT NULL,
    pep_left_office_us BIGINT,
    edd_signed_off BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    erased_at_us BIGINT,
    personal_json TEXT
);
CREATE TABLE tier_changes (
    customer BIGINT NOT NULL REFERENCES customers (id),
    seq BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    tier BIGINT NOT NULL,
    cdd BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (customer, seq)
);
CREATE TABLE attestations (
    customer BIGINT NOT NULL REFERENCES customers (id),
    claims_sha256 BYTEA NOT NULL,
    issuer TEXT NOT NULL,
    assurance BIGINT NOT NULL,
    accepted_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    claims BYTEA,
    PRIMARY KEY (customer, claims_sha256)
);
CREATE TABLE cases (
    id BIGINT PRIMARY KEY,
    customer BIGINT NOT NULL,
    transfer_id TEXT,
    decision_hash BYTEA,
    alert_codes TEXT NOT NULL,
    opened_at_us BIGINT NOT NULL,
    state BIGINT NOT NULL,
    assignee TEXT,
    hold BIGINT NOT NULL,
    closed_at_us BIGINT
);
CREATE INDEX cases_customer ON cases (customer);
CREATE TABLE case_notes (
    case_id BIGINT NOT NULL REFERENCES cases (id),
    seq BIGINT NOT NULL,
    author TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
);
CREATE TABLE case_attachments (
    case_id BIGINT NOT NULL REFERENCES cases (id),
    seq BIGINT NOT NULL,
    sha256 BYTEA NOT NULL,
    uri TEXT NOT NULL,
    added_by TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    PRIMARY KEY (case_id, seq)
);
CREATE TABLE decisions (
    hash BYTEA PRIMARY KEY,
    transfer_id TEXT NOT NULL,
    customer BIGINT NOT NULL,
    evaluated_at_us BIGINT NOT NULL,
    outcome BIGINT NOT NULL,
    record_json TEXT NOT NULL,
    signature BYTEA NOT NULL,
    gate_key_id TEXT NOT NULL
);
CREATE INDEX decisions_customer ON decisions (customer);
CREATE INDEX decisions_transfer ON decisions (transfer_id);
