-- A run's model usage (SPEC §11): {"prompt_tokens","completion_tokens","total_tokens","cost_usd","llm_calls"}
-- as JSON text, written with the run's end; NULL for runs that ended before it existed (read as zeros).
ALTER TABLE runs ADD COLUMN usage TEXT;
