-- A development or staging build stopped because nobody used it for [builds]
-- sleep_minutes: the next request to one of its names starts it again.
ALTER TABLE builds ADD COLUMN asleep boolean NOT NULL DEFAULT false;
