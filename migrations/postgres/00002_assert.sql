-- +goose Up
-- fleetpki_assert lets one statement abort itself (and so roll back) when a
-- condition it computed fails; the group insert uses it to stay atomic.
-- +goose StatementBegin
CREATE FUNCTION fleetpki_assert(ok boolean, msg text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'fleetpki_assert: %', msg USING ERRCODE = 'P0001';
    END IF;
    RETURN true;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION fleetpki_assert(boolean, text);
