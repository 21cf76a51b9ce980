-- The SIP carrier's saved dialogs (adapters/carriers/sip/recovery.py, sip/saved_dialog.py): one row per
-- answered SIP leg, written when the leg is answered and whenever its dialog or session changes,
-- deleted when the leg ends. A restarted node, or the node that takes a conference over, reads a
-- leg's row and recovers the call with a re-INVITE. `dialog` is the SavedDialog's JSON document.

CREATE TABLE sip_dialogs (
    leg_id TEXT PRIMARY KEY,
    conference_id TEXT NOT NULL,
    dialog TEXT NOT NULL,
    saved_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX sip_dialogs_by_conference ON sip_dialogs (conference_id);
