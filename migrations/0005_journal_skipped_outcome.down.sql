DELETE FROM regops_journal WHERE phase = 'skipped';
ALTER TABLE regops_journal DROP CONSTRAINT regops_journal_phase_check;
ALTER TABLE regops_journal ADD CONSTRAINT regops_journal_phase_check CHECK (phase IN ('intent', 'done', 'failed'));
