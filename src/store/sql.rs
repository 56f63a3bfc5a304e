//! The SQL both backends share. SQLite and PostgreSQL run the same statements (numbered `$N`
//! parameters, `RETURNING`, `ON CONFLICT`), so the queries live once, here, and each backend
//! module instantiates them for its own row type with [`sql_store!`].

/// Implements [`super::Store`] for `$store`, whose rows are `$row`, with the shared SQL; the
/// backend adds the operations that differ (backup) as extra items.
macro_rules! sql_store {
    ($store:ident, $row:ty, { $($backend_specific:tt)* }) => {
        type DbRow = $row;

        fn corrupt(what: &str) -> StoreError {
            StoreError::Corrupt(what.to_owned())
        }

        fn client_from_row(row: &DbRow) -> StoreResult<Client> {
            let kind: String = row.try_get("kind")?;
            let grant_types: String = row.try_get("grant_types")?;
            let redirect_uris: String = row.try_get("redirect_uris")?;
            let logout_uris: String = row.try_get("post_logout_redirect_uris")?;
            let scope: String = row.try_get("scope")?;
            let alg: String = row.try_get("id_token_alg")?;
            Ok(Client {
                client_id: row.try_get("client_id")?,
                name: row.try_get("name")?,
                kind: ClientKind::from_str(&kind).map_err(|_| corrupt("client kind"))?,
                secret_hash: row.try_get("secret_hash")?,
                redirect_uris: serde_json::from_str(&redirect_uris)
                    .map_err(|_| corrupt("redirect uris"))?,
                post_logout_redirect_uris: serde_json::from_str(&logout_uris)
                    .map_err(|_| corrupt("logout uris"))?,
                grant_types: grant_types
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(GrantType::from_str)
                    .collect::<Result<_, _>>()
                    .map_err(|_| corrupt("grant types"))?,
                scope: Scopes::parse(&scope).map_err(|_| corrupt("client scope"))?,
                first_party: row.try_get("first_party")?,
                pkce_required: row.try_get("pkce_required")?,
                id_token_alg: SigningAlg::from_str(&alg).map_err(|_| corrupt("id token alg"))?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn user_from_row(row: &DbRow) -> StoreResult<User> {
            let role: String = row.try_get("role")?;
            Ok(User {
                id: row.try_get("id")?,
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                role: Role::from_str(&role).map_err(|_| corrupt("role"))?,
                organization_id: row.try_get("organization_id")?,
                given_name: row.try_get("given_name")?,
                family_name: row.try_get("family_name")?,
                email: row.try_get("email")?,
                phone_number: row.try_get("phone_number")?,
                address: row.try_get("address")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn grant_from_row(row: &DbRow) -> StoreResult<GrantRecord> {
            Ok(GrantRecord {
                id: row.try_get("id")?,
                client_id: row.try_get("client_id")?,
                user_id: row.try_get("user_id")?,
                session_id: row.try_get("session_id")?,
                scope: row.try_get("scope")?,
                auth_time: row.try_get("auth_time")?,
                amr: row.try_get("amr")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        }

        fn refresh_from_row(row: &DbRow) -> StoreResult<RefreshRecord> {
            Ok(RefreshRecord {
                jti: row.try_get("jti")?,
                grant_id: row.try_get("grant_id")?,
                client_id: row.try_get("client_id")?,
                scope: row.try_get("scope")?,
                issued_at: row.try_get("issued_at")?,
                expires_at: row.try_get("expires_at")?,
                rotated_at: row.try_get("rotated_at")?,
            })
        }

        fn session_from_row(row: &DbRow) -> StoreResult<SessionRecord> {
            Ok(SessionRecord {
                id: row.try_get("id")?,
                token_hash: row.try_get("token_hash")?,
                user_id: row.try_get("user_id")?,
                auth_time: row.try_get("auth_time")?,
                amr: row.try_get("amr")?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        }

        fn join_grants(grants: &[GrantType]) -> String {
            grants
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }

        fn to_json(values: &[String]) -> StoreResult<String> {
            serde_json::to_string(values).map_err(|_| corrupt("uri list"))
        }

        async fn insert_organization_in<'e, E>(exec: E, org: &Organization, now: i64) -> StoreResult<()>
        where
        E: sqlx::Executor<'e, Database = <DbRow as sqlx::Row>::Database>,
        {
            sqlx::query(
                "INSERT INTO organizations (id, name, country, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&org.id)
            .bind(&org.name)
            .bind(&org.country)
            .bind(now)
            .execute(exec)
            .await?;
            Ok(())
        }

        async fn insert_user_in<'e, E>(exec: E, user: &User) -> StoreResult<()>
        where
        E: sqlx::Executor<'e, Database = <DbRow as sqlx::Row>::Database>,
        {
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, role, organization_id, given_name, \
                 family_name, email, phone_number, address, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(&user.organization_id)
            .bind(&user.given_name)
            .bind(&user.family_name)
            .bind(&user.email)
            .bind(&user.phone_number)
            .bind(&user.address)
            .bind(user.created_at)
            .execute(exec)
            .await?;
            Ok(())
        }

        async fn insert_client_in<'e, E>(exec: E, client: &Client) -> StoreResult<()>
        where
        E: sqlx::Executor<'e, Database = <DbRow as sqlx::Row>::Database>,
        {
            sqlx::query(
                "INSERT INTO clients (client_id, name, kind, secret_hash, redirect_uris, \
                 post_logout_redirect_uris, grant_types, scope, first_party, pkce_required, \
                 id_token_alg, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(client.kind.as_str())
            .bind(&client.secret_hash)
            .bind(to_json(&client.redirect_uris)?)
            .bind(to_json(&client.post_logout_redirect_uris)?)
            .bind(join_grants(&client.grant_types))
            .bind(client.scope.to_string())
            .bind(client.first_party)
            .bind(client.pkce_required)
            .bind(client.id_token_alg.as_str())
            .bind(client.created_at)
            .execute(exec)
            .await?;
            Ok(())
        }

        #[async_trait]
        impl Store for $store {
            $($backend_specific)*

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn has_users(&self) -> StoreResult<bool> {
                let row = sqlx::query("SELECT EXISTS(SELECT 1 FROM users) AS present")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("present")?)
            }

            async fn insert_bootstrap(
                &self,
                org: &Organization,
                users: &[User],
                clients: &[Client],
                now: i64,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                insert_organization_in(&mut *tx, org, now).await?;
                for user in users {
                    insert_user_in(&mut *tx, user).await?;
                }
                for client in clients {
                    insert_client_in(&mut *tx, client).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn insert_organization(&self, org: &Organization, now: i64) -> StoreResult<()> {
                insert_organization_in(&self.pool, org, now).await
            }

            async fn get_organization(&self, id: &str) -> StoreResult<Option<Organization>> {
                let row = sqlx::query("SELECT id, name, country FROM organizations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    Ok(Organization {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        country: r.try_get("country")?,
                    })
                })
                .transpose()
            }

            async fn insert_user(&self, user: &User) -> StoreResult<()> {
                insert_user_in(&self.pool, user).await
            }

            async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
                let row = sqlx::query("SELECT * FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn get_user(&self, id: &str) -> StoreResult<Option<User>> {
                let row = sqlx::query("SELECT * FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn insert_client(&self, client: &Client) -> StoreResult<()> {
                insert_client_in(&self.pool, client).await
            }

            async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>> {
                let row = sqlx::query("SELECT * FROM clients WHERE client_id = $1")
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(client_from_row).transpose()
            }

            async fn list_clients(&self) -> StoreResult<Vec<Client>> {
                let rows = sqlx::query("SELECT * FROM clients ORDER BY client_id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(client_from_row).collect()
            }

            async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, sealed_key, created_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.sealed_key)
                .bind(key.created_at)
                .bind(key.retired_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
                let rows = sqlx::query(
                    "SELECT kid, alg, sealed_key, created_at, retired_at FROM signing_keys \
                     ORDER BY created_at DESC, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(SigningKeyRecord {
                            kid: r.try_get("kid")?,
                            alg: r.try_get("alg")?,
                            sealed_key: r.try_get("sealed_key")?,
                            created_at: r.try_get("created_at")?,
                            retired_at: r.try_get("retired_at")?,
                        })
                    })
                    .collect()
            }

            async fn retire_signing_keys(&self, alg: &str, keep: &str, at: i64) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE signing_keys SET retired_at = $1 WHERE alg = $2 AND kid <> $3 AND retired_at IS NULL",
                )
                .bind(at)
                .bind(alg)
                .bind(keep)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, token_hash, user_id, auth_time, amr, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&s.id)
                .bind(&s.token_hash)
                .bind(&s.user_id)
                .bind(s.auth_time)
                .bind(&s.amr)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<SessionRecord>> {
                let row = sqlx::query(
                    "SELECT * FROM sessions WHERE token_hash = $1 AND expires_at > $2 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn end_session(&self, session_id: &str, now: i64) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE grants SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn insert_auth_request(&self, r: &PendingAuthRequest) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO auth_requests (handle_hash, client_id, params, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&r.handle_hash)
                .bind(&r.client_id)
                .bind(&r.params)
                .bind(r.created_at)
                .bind(r.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_auth_request(
                &self,
                handle_hash: &str,
                now: i64,
            ) -> StoreResult<Option<PendingAuthRequest>> {
                let row =
                    sqlx::query("SELECT * FROM auth_requests WHERE handle_hash = $1 AND expires_at > $2")
                        .bind(handle_hash)
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|r| {
                    Ok(PendingAuthRequest {
                        handle_hash: r.try_get("handle_hash")?,
                        client_id: r.try_get("client_id")?,
                        params: r.try_get("params")?,
                        created_at: r.try_get("created_at")?,
                        expires_at: r.try_get("expires_at")?,
                    })
                })
                .transpose()
            }

            async fn delete_auth_request(&self, handle_hash: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM auth_requests WHERE handle_hash = $1")
                    .bind(handle_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_grant_with_code(&self, g: &GrantRecord, c: &CodeRecord) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO grants (id, client_id, user_id, session_id, scope, auth_time, amr, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&g.id)
                .bind(&g.client_id)
                .bind(&g.user_id)
                .bind(&g.session_id)
                .bind(&g.scope)
                .bind(g.auth_time)
                .bind(&g.amr)
                .bind(g.created_at)
                .bind(g.expires_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO authorization_codes (code_hash, grant_id, client_id, redirect_uri, nonce, \
                     code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.code_hash)
                .bind(&c.grant_id)
                .bind(&c.client_id)
                .bind(&c.redirect_uri)
                .bind(&c.nonce)
                .bind(&c.code_challenge)
                .bind(c.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
                let spent = sqlx::query(
                    "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL \
                     AND grant_id IN (SELECT id FROM grants WHERE revoked_at IS NULL) \
                     RETURNING code_hash, grant_id, client_id, redirect_uri, nonce, code_challenge, expires_at",
                )
                .bind(now)
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await?;

                let Some(row) = spent else {
                    let previous =
                        sqlx::query("SELECT grant_id FROM authorization_codes WHERE code_hash = $1")
                            .bind(code_hash)
                            .fetch_optional(&self.pool)
                            .await?;
                    return Ok(match previous {
                        Some(r) => CodeRedemption::Replayed {
                            grant_id: r.try_get("grant_id")?,
                        },
                        None => CodeRedemption::Unknown,
                    });
                };

                let code = CodeRecord {
                    code_hash: row.try_get("code_hash")?,
                    grant_id: row.try_get("grant_id")?,
                    client_id: row.try_get("client_id")?,
                    redirect_uri: row.try_get("redirect_uri")?,
                    nonce: row.try_get("nonce")?,
                    code_challenge: row.try_get("code_challenge")?,
                    expires_at: row.try_get("expires_at")?,
                };
                // The UPDATE above decided: this request won. A replay that revokes the grant
                // right after also revokes the tokens issued now, as RFC 6749 §4.1.2 asks.
                let grant = sqlx::query("SELECT * FROM grants WHERE id = $1")
                    .bind(&code.grant_id)
                    .fetch_optional(&self.pool)
                    .await?;
                match grant {
                    Some(g) => Ok(CodeRedemption::Fresh(Box::new((code, grant_from_row(&g)?)))),
                    None => Ok(CodeRedemption::Unknown),
                }
            }

            async fn revoke_grant(&self, grant_id: &str, now: i64) -> StoreResult<()> {
                sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(grant_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn insert_refresh_token(&self, t: &RefreshRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (jti, grant_id, client_id, scope, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.jti)
                .bind(&t.grant_id)
                .bind(&t.client_id)
                .bind(&t.scope)
                .bind(t.issued_at)
                .bind(t.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn rotate_refresh_token(&self, jti: &str, now: i64) -> StoreResult<RefreshRotation> {
                let spent = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $1 WHERE jti = $2 AND rotated_at IS NULL \
                     AND grant_id IN (SELECT id FROM grants WHERE revoked_at IS NULL) \
                     RETURNING jti, grant_id, client_id, scope, issued_at, expires_at, rotated_at",
                )
                .bind(now)
                .bind(jti)
                .fetch_optional(&self.pool)
                .await?;

                let Some(row) = spent else {
                    let previous = sqlx::query(
                        "SELECT r.grant_id, r.rotated_at, g.revoked_at FROM refresh_tokens r \
                         JOIN grants g ON g.id = r.grant_id WHERE r.jti = $1",
                    )
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(previous) = previous else {
                        return Ok(RefreshRotation::Unknown);
                    };
                    let revoked: Option<i64> = previous.try_get("revoked_at")?;
                    if revoked.is_some() {
                        return Ok(RefreshRotation::Revoked);
                    }
                    return Ok(RefreshRotation::Reused {
                        grant_id: previous.try_get("grant_id")?,
                    });
                };

                let record = refresh_from_row(&row)?;
                let grant = sqlx::query("SELECT * FROM grants WHERE id = $1")
                    .bind(&record.grant_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(RefreshRotation::Rotated(Box::new((
                    record,
                    grant_from_row(&grant)?,
                ))))
            }

            async fn find_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshRecord>> {
                let row = sqlx::query("SELECT * FROM refresh_tokens WHERE jti = $1")
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(refresh_from_row).transpose()
            }

            async fn record_access_token(
                &self,
                jti: &str,
                grant_id: &str,
                expires_at: i64,
            ) -> StoreResult<()> {
                sqlx::query("INSERT INTO access_tokens (jti, grant_id, expires_at) VALUES ($1, $2, $3)")
                    .bind(jti)
                    .bind(grant_id)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn revoke_token_id(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(jti)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn is_token_revoked(&self, jti: &str) -> StoreResult<bool> {
                let row = sqlx::query(
                    "SELECT EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = $1) \
                     OR EXISTS(SELECT 1 FROM access_tokens a JOIN grants g ON g.id = a.grant_id \
                               WHERE a.jti = $1 AND g.revoked_at IS NOT NULL) \
                     OR EXISTS(SELECT 1 FROM refresh_tokens r JOIN grants g ON g.id = r.grant_id \
                               WHERE r.jti = $1 AND g.revoked_at IS NOT NULL) AS revoked",
                )
                .bind(jti)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("revoked")?)
            }

            async fn get_consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<Scopes>> {
                let row = sqlx::query("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
                    .bind(user_id)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    let scope: String = r.try_get("scope")?;
                    Scopes::parse(&scope).map_err(|_| corrupt("consent scope"))
                })
                .transpose()
            }

            async fn save_consent(
                &self,
                user_id: &str,
                client_id: &str,
                scope: &Scopes,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, \
                     granted_at = excluded.granted_at",
                )
                .bind(user_id)
                .bind(client_id)
                .bind(scope.to_string())
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_mfa(&self, user_id: &str) -> StoreResult<Option<MfaRecord>> {
                let row = sqlx::query(
                    "SELECT user_id, sealed_secret, confirmed_at, last_used_step FROM mfa_factors \
                     WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok(MfaRecord {
                        user_id: r.try_get("user_id")?,
                        sealed_secret: r.try_get("sealed_secret")?,
                        confirmed_at: r.try_get("confirmed_at")?,
                        last_used_step: r.try_get("last_used_step")?,
                    })
                })
                .transpose()
            }

            async fn put_pending_mfa(&self, user_id: &str, sealed_secret: &str, now: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO mfa_factors (user_id, sealed_secret, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
                     created_at = excluded.created_at WHERE mfa_factors.confirmed_at IS NULL",
                )
                .bind(user_id)
                .bind(sealed_secret)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn confirm_mfa(&self, user_id: &str, step: i64, now: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE mfa_factors SET confirmed_at = $1, last_used_step = $2 \
                     WHERE user_id = $3 AND confirmed_at IS NULL",
                )
                .bind(now)
                .bind(step)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn accept_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE mfa_factors SET last_used_step = $1 WHERE user_id = $2 \
                     AND confirmed_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $1)",
                )
                .bind(step)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_mfa(&self, user_id: &str) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM backup_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM mfa_factors WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn replace_backup_codes(&self, user_id: &str, hashes: &[String], now: i64) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM backup_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                for hash in hashes {
                    sqlx::query("INSERT INTO backup_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)")
                        .bind(user_id)
                        .bind(hash)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn use_backup_code(&self, user_id: &str, hash: &str, now: i64) -> StoreResult<Option<i64>> {
                let spent = sqlx::query(
                    "UPDATE backup_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 \
                     AND used_at IS NULL",
                )
                .bind(now)
                .bind(user_id)
                .bind(hash)
                .execute(&self.pool)
                .await?;
                if spent.rows_affected() != 1 {
                    return Ok(None);
                }
                Ok(Some(self.count_backup_codes(user_id).await?))
            }

            async fn count_backup_codes(&self, user_id: &str) -> StoreResult<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS left_over FROM backup_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("left_over")?)
            }

            async fn ip_blocked_until(&self, ip: &str, now: i64) -> StoreResult<Option<i64>> {
                let row = sqlx::query("SELECT blocked_until FROM ip_blocks WHERE ip = $1 AND blocked_until > $2")
                    .bind(ip)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| Ok(r.try_get("blocked_until")?)).transpose()
            }

            async fn record_ip_failure(
                &self,
                ip: &str,
                now: i64,
                window: i64,
                limit: i64,
                block: i64,
            ) -> StoreResult<Option<i64>> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("INSERT INTO ip_failures (ip, at) VALUES ($1, $2)")
                    .bind(ip)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query("SELECT COUNT(*) AS recent FROM ip_failures WHERE ip = $1 AND at > $2")
                    .bind(ip)
                    .bind(now - window)
                    .fetch_one(&mut *tx)
                    .await?;
                let recent: i64 = row.try_get("recent")?;
                let blocked = if recent >= limit {
                    let until = now + block;
                    sqlx::query(
                        "INSERT INTO ip_blocks (ip, blocked_until) VALUES ($1, $2) \
                         ON CONFLICT (ip) DO UPDATE SET blocked_until = excluded.blocked_until",
                    )
                    .bind(ip)
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM ip_failures WHERE ip = $1")
                        .bind(ip)
                        .execute(&mut *tx)
                        .await?;
                    Some(until)
                } else {
                    None
                };
                tx.commit().await?;
                Ok(blocked)
            }

            async fn account_failures(&self, user_id: &str) -> StoreResult<Option<AccountFailures>> {
                let row = sqlx::query("SELECT failures, last_failure FROM account_failures WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    Ok(AccountFailures { failures: r.try_get("failures")?, last_failure: r.try_get("last_failure")? })
                })
                .transpose()
            }

            async fn record_account_failure(&self, user_id: &str, now: i64, reset_after: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO account_failures (user_id, failures, last_failure) VALUES ($1, 1, $2) \
                     ON CONFLICT (user_id) DO UPDATE SET \
                     failures = CASE WHEN account_failures.last_failure < $3 THEN 1 \
                                     ELSE account_failures.failures + 1 END, \
                     last_failure = excluded.last_failure",
                )
                .bind(user_id)
                .bind(now)
                .bind(now - reset_after)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn clear_account_failures(&self, user_id: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM account_failures WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_sessions(&self, user_id: &str, now: i64) -> StoreResult<Vec<SessionRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM sessions WHERE user_id = $1 AND expires_at > $2 AND revoked_at IS NULL \
                     ORDER BY created_at DESC, id",
                )
                .bind(user_id)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(session_from_row).collect()
            }

            async fn end_user_sessions(&self, user_id: &str, now: i64) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "UPDATE grants SET revoked_at = $1 WHERE revoked_at IS NULL AND session_id IN \
                     (SELECT id FROM sessions WHERE user_id = $2 AND revoked_at IS NULL)",
                )
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                let ended = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ended.rows_affected())
            }

            async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
                let mut removed = 0;
                for sql in [
                    "DELETE FROM auth_requests WHERE expires_at <= $1",
                    "DELETE FROM revoked_tokens WHERE expires_at <= $1",
                    "DELETE FROM access_tokens WHERE expires_at <= $1",
                    "DELETE FROM authorization_codes WHERE expires_at <= $1 - 86400",
                    "DELETE FROM refresh_tokens WHERE expires_at <= $1",
                    "DELETE FROM sessions WHERE expires_at <= $1",
                    "DELETE FROM ip_blocks WHERE blocked_until <= $1",
                    "DELETE FROM ip_failures WHERE at <= $1 - 86400",
                    "DELETE FROM grants WHERE expires_at <= $1 AND id NOT IN \
                     (SELECT grant_id FROM authorization_codes) AND id NOT IN \
                     (SELECT grant_id FROM refresh_tokens) AND id NOT IN (SELECT grant_id FROM access_tokens)",
                ] {
                    removed += sqlx::query(sql)
                        .bind(now)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                }
                Ok(removed)
            }
        }
    };
}

pub(crate) use sql_store;
