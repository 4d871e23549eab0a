-- Addresses and custom fields, typed, for the staging layer (live rows only, realm_id in
-- every key). Plain views over the raw zone: always current, no `qbo model refresh` needed;
-- each query unnests the JSON it reads, so filter on realm_id / owner / txn ids when the
-- company is large.

-- Every address of a name (customers' and vendors' billing and shipping, employees' primary)
-- or of a transaction (the billing and shipping address printed on it): one row each.
CREATE VIEW staging.addresses AS
WITH owners AS (
          SELECT 'Customer'::text AS owner_entity, realm_id, id, payload FROM raw.qb_customers WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Vendor', realm_id, id, payload FROM raw.qb_vendors WHERE deleted_at_utc IS NULL
UNION ALL SELECT 'Employee', realm_id, id, payload FROM raw.qb_employees WHERE deleted_at_utc IS NULL
UNION ALL SELECT source_entity, realm_id, id, payload FROM staging.raw_transactions
)
SELECT o.realm_id,
       o.owner_entity,
       o.id AS owner_id,
       a.role AS address_role,
       a.addr->>'Id' AS address_id,
       a.addr->>'Line1' AS line1,
       a.addr->>'Line2' AS line2,
       a.addr->>'Line3' AS line3,
       a.addr->>'Line4' AS line4,
       a.addr->>'Line5' AS line5,
       a.addr->>'City' AS city,
       a.addr->>'CountrySubDivisionCode' AS country_sub_division_code,
       a.addr->>'PostalCode' AS postal_code,
       a.addr->>'Country' AS country,
       -- QBO writes INVALID where it could not place an address.
       CASE WHEN a.addr->>'Lat' ~ '^-?[0-9]+(\.[0-9]+)?$' THEN (a.addr->>'Lat')::numeric END AS latitude,
       CASE WHEN a.addr->>'Long' ~ '^-?[0-9]+(\.[0-9]+)?$' THEN (a.addr->>'Long')::numeric END AS longitude
FROM owners o
CROSS JOIN LATERAL (VALUES
    ('billing', o.payload->'BillAddr'),
    ('shipping', o.payload->'ShipAddr'),
    ('primary', o.payload->'PrimaryAddr')
) AS a(role, addr)
WHERE jsonb_typeof(a.addr) = 'object';

-- Every custom field value of every transaction: one row per element of its CustomField
-- list (QBO sends the first three unless asked for `include=enhancedAllCustomFields`).
CREATE VIEW staging.custom_fields AS
SELECT t.realm_id,
       t.source_entity,
       t.id AS txn_id,
       f.idx::integer AS field_index,
       f.field->>'DefinitionId' AS definition_id,
       f.field->>'Name' AS name,
       f.field->>'Type' AS field_type,
       f.field->>'StringValue' AS string_value,
       CASE WHEN f.field->>'NumberValue' ~ '^-?[0-9]+(\.[0-9]+)?$'
            THEN (f.field->>'NumberValue')::numeric END AS number_value,
       CASE WHEN f.field->>'DateValue' ~ '^\d{4}-\d{2}-\d{2}'
            THEN left(f.field->>'DateValue', 10)::date END AS date_value,
       CASE lower(f.field->>'BooleanValue') WHEN 'true' THEN true WHEN 'false' THEN false END AS boolean_value
FROM staging.raw_transactions t
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(t.payload->'CustomField') = 'array' THEN t.payload->'CustomField' ELSE '[]'::jsonb END
) WITH ORDINALITY AS f(field, idx);

COMMENT ON VIEW staging.addresses IS 'Every billing, shipping and primary address of names and transactions';
COMMENT ON VIEW staging.custom_fields IS 'Every custom field value of every transaction, typed';
