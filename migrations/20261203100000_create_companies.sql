-- The companies (realms) qbo loads: what `--all-companies` means, and where a company that
-- needs a human (its refresh token was revoked) or was paused by one is marked, so the rest
-- of the fleet goes on without it. Loaded data is keyed by realm_id in its own tables and
-- never references this table: removing a company never removes what was loaded.
CREATE TYPE ops.company_status AS ENUM ('active', 'needs_reauth', 'paused');
CREATE TYPE ops.qbo_environment AS ENUM ('production', 'sandbox');

CREATE TABLE ops.companies (
    realm_id           text                PRIMARY KEY CHECK (realm_id ~ '^[0-9]+$'),
    -- CompanyInfo.CompanyName once qbo has loaded company_info (or `--name` until then).
    display_name       text,
    environment        ops.qbo_environment NOT NULL,
    status             ops.company_status  NOT NULL DEFAULT 'active',
    -- Why the status was last set (`paused by hand`, the refusal that needs a login); never
    -- a token.
    status_reason      text,
    status_changed_at  timestamptz         NOT NULL DEFAULT now(),
    added_at           timestamptz         NOT NULL DEFAULT now(),
    last_loaded_at     timestamptz
);
