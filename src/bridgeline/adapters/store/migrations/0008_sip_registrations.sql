-- Phones' registrations shared by every node on the database (issue #12, the sip carrier's
-- RegistrationBook port: adapters/carriers/sip/shared_registrations.py). One row per binding,
-- keyed by the SIP domain, the endpoint's username and the contact as registered; `binding` is the
-- JSON the carrier needs to call it (contact, target, Path, transport). `expires_at` is in UNIX
-- seconds from the registering node's clock: lookups skip expired rows and writes delete them.

CREATE TABLE sip_registrations (
    sip_domain TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    binding TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sip_domain, username, contact)
);

CREATE INDEX sip_registrations_by_expiry ON sip_registrations (expires_at);
