-- Recording segments (issue #13): a recording that continues an earlier segment (its conference was
-- restored, taken over or handed off) names it, so a recording's segments can be listed in order.

ALTER TABLE recordings ADD COLUMN previous_recording_id TEXT;
