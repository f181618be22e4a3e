-- One 402, many payments: an x402 offer may be paid several times while it is valid (each payment is still claimed
-- once by the money itself, its proof key); MPP challenges stay single-use among live payments, as MPP requires.
DROP INDEX payments_live_challenge;
CREATE UNIQUE INDEX payments_live_mpp_challenge ON payments (challenge_id)
    WHERE challenge_id IS NOT NULL AND state <> 'voided' AND protocol = 'mpp';
