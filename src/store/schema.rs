//! Diesel's view of the tables in `migrations/` (kept by hand: the two backends share it).

diesel::table! {
    instance (id) {
        id -> Integer,
        secret_check -> Text,
    }
}

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        allowed_ips -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        org_id -> Text,
        name -> Text,
        auth_method -> Text,
        secret_hash -> Nullable<Text>,
        secret_enc -> Nullable<Text>,
        grant_types -> Text,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        scopes -> Text,
        audiences -> Text,
        jwks -> Nullable<Text>,
        jwks_uri -> Nullable<Text>,
        access_token_alg -> Text,
        id_token_alg -> Text,
        is_public -> Integer,
        is_native -> Integer,
        skip_consent -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        prev_secret_hash -> Nullable<Text>,
        prev_secret_enc -> Nullable<Text>,
        prev_secret_expires_at -> Nullable<BigInt>,
        created_seq -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        public_jwk -> Text,
        private_key -> Text,
        created_at -> BigInt,
        activates_at -> BigInt,
        retired_at -> Nullable<BigInt>,
        publish_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    used_assertions (client_id, jti) {
        client_id -> Text,
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        org_id -> Text,
        username -> Text,
        username_key -> Text,
        email -> Nullable<Text>,
        email_verified -> Integer,
        name -> Nullable<Text>,
        is_admin -> Integer,
        password_hash -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        created_seq -> BigInt,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        org_id -> Text,
        user_id -> Text,
        redirect_uri -> Text,
        code_challenge -> Text,
        nonce -> Nullable<Text>,
        scope -> Text,
        auth_time -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        family_id -> Nullable<Text>,
        access_jti -> Nullable<Text>,
        access_exp -> Nullable<BigInt>,
    }
}

diesel::table! {
    refresh_families (id) {
        id -> Text,
        client_id -> Text,
        org_id -> Text,
        user_id -> Text,
        scope -> Text,
        auth_time -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        family_id -> Text,
        issued_at -> BigInt,
        idle_expires_at -> BigInt,
        rotated_at -> Nullable<BigInt>,
        access_jti -> Nullable<Text>,
        access_exp -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        user_id -> Text,
        org_id -> Text,
        auth_time -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    login_throttle (throttle_key) {
        throttle_key -> Text,
        failures -> Integer,
        window_start -> BigInt,
        blocked_until -> Nullable<BigInt>,
        in_flight -> Integer,
    }
}

diesel::table! {
    consents (user_id, client_id) {
        user_id -> Text,
        client_id -> Text,
        scope -> Text,
        granted_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        org_id -> Text,
        name -> Text,
        key_prefix -> Text,
        key_hash -> Text,
        environment -> Text,
        scopes -> Text,
        allowed_ips -> Text,
        metadata -> Text,
        rate_limit_per_minute -> Nullable<Integer>,
        expires_at -> Nullable<BigInt>,
        created_at -> BigInt,
        created_seq -> BigInt,
        created_by -> Text,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        rotated_to -> Nullable<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        seq -> BigInt,
        org_id -> Text,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        reason -> Nullable<Text>,
        ip -> Nullable<Text>,
        request_id -> Nullable<Text>,
        detail -> Text,
        dedup_key -> Nullable<Text>,
        created_at -> BigInt,
    }
}
diesel::table! {
    idempotency_keys (key_hash) {
        key_hash -> Text,
        request_hash -> Text,
        status -> Nullable<Integer>,
        response -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}
diesel::joinable!(api_keys -> organizations (org_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> refresh_families (family_id));
diesel::joinable!(clients -> organizations (org_id));
diesel::joinable!(users -> organizations (org_id));
diesel::allow_tables_to_appear_in_same_query!(
    instance,
    organizations,
    clients,
    signing_keys,
    used_assertions,
    revoked_tokens,
    users,
    authorization_codes,
    refresh_families,
    refresh_tokens,
    sessions,
    login_throttle,
    consents,
    api_keys,
    audit_events,
    idempotency_keys
);
