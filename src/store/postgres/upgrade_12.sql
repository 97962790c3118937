-- PLACEHOLDER — NOT THE REAL UPGRADE TO 12. Version 12 (issue 26, item 1: check results
-- kept per source) is written on another branch (`waits`); this empty step exists only so
-- that this branch's upgrade to 13 has the number it will have. The lead replaces it with
-- the real script when merging.
SELECT 1;
