-- 0004 a journaled intent may end 'skipped': an action recovered on resume is re-checked like a fresh
-- one, and one that is referenced again (or was re-uploaded) since its intent is not carried out.
ALTER TABLE regops_journal DROP CONSTRAINT regops_journal_phase_check;
ALTER TABLE regops_journal ADD CONSTRAINT regops_journal_phase_check CHECK (phase IN ('intent', 'done', 'failed', 'skipped'));
