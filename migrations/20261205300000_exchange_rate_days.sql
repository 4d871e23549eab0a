-- The days whose exchange rates qbo has asked QBO for, per company: `qbo sync` loads the
-- rates of the days its loaded foreign-currency transactions are dated on, and asks each day
-- once (a day is one ExchangeRate query, every currency in one answer). A day QBO answered
-- without a currency's rate is not asked again by sync (`qbo exchange-rates` re-asks any day
-- it is given).
CREATE TABLE ops.exchange_rate_days (
    realm_id    text        NOT NULL,
    as_of_date  date        NOT NULL,
    rates       integer     NOT NULL,
    asked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, as_of_date)
);
COMMENT ON TABLE ops.exchange_rate_days IS 'Days whose ExchangeRate query QBO answered (and how many rates it held), per realm';

-- The days loaded before this table existed were asked too.
INSERT INTO ops.exchange_rate_days (realm_id, as_of_date, rates, asked_at)
SELECT realm_id, as_of_date, count(*), max(ingested_at_utc)
FROM raw.qb_exchange_rates
GROUP BY realm_id, as_of_date;
