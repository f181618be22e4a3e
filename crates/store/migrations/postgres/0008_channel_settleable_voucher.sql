-- The highest voucher whose cumulative amount is at most what a channel charged (JSON {"amount","signature"}, or
-- empty): what the seller settles with on an escrow that pays a voucher's whole amount (MPP `evm` session).
ALTER TABLE channels ADD COLUMN settleable TEXT NOT NULL DEFAULT '';
