//! The `zarish` command line: `serve`, and the administrator's commands that work on the same
//! data directory. Secrets are read from stdin or a prompt, never from argv.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::bootstrap::{self, ClientSpec, RegistrationError, UserSpec};
use crate::config::{FileConfig, LogFormat, Overrides, Settings};
use crate::model::{ClientKind, GrantType, Organization, Role, Scopes, SigningAlg};
use crate::password::PasswordHasherPool;
use crate::secret::SecretString;
use crate::server;

/// Zarish Sphere Auth: OAuth 2.0 / OpenID Connect server for healthcare.
#[derive(Debug, Parser)]
#[command(name = "zarish", version)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "ZARISH_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, master key, demo credentials).
    #[arg(long, global = true, env = "ZARISH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://USER@HOST/DB); the embedded SQLite store when absent.
    #[arg(
        long,
        global = true,
        env = "ZARISH_DATABASE_URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Master key file shared by every node (default DATA_DIR/keys/master.key).
    #[arg(long, global = true, env = "ZARISH_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Write a consistent online copy of the SQLite store to a file.
    Backup {
        /// The file to write (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Create a demo organization, users and clients on first start.
    #[arg(long)]
    demo: bool,
    /// Address to listen on.
    #[arg(long, env = "ZARISH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Issuer URL (defaults to http://LISTEN).
    #[arg(long, env = "ZARISH_ISSUER")]
    issuer: Option<String>,
    /// Log format.
    #[arg(long, env = "ZARISH_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Add an organization.
    Add {
        /// Identifier, e.g. hospital-abc.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// ISO 3166-1 alpha-2 country code.
        #[arg(long)]
        country: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from stdin (or a prompt on a terminal).
    Add {
        /// Sign-in name.
        #[arg(long)]
        username: String,
        /// Role: super_admin, organization_admin, healthcare_provider, data_analyst, clinical_staff.
        #[arg(long)]
        role: String,
        /// Organization id.
        #[arg(long = "org")]
        organization: String,
        /// Given name.
        #[arg(long)]
        given_name: Option<String>,
        /// Family name.
        #[arg(long)]
        family_name: Option<String>,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Remove a user's second factor and backup codes (they enrol again at next sign-in).
    ResetMfa {
        /// Sign-in name.
        #[arg(long)]
        username: String,
    },
    /// List a user's live sessions.
    Sessions {
        /// Sign-in name.
        #[arg(long)]
        username: String,
    },
    /// End every session of a user and revoke the refresh tokens issued in them.
    Logout {
        /// Sign-in name.
        #[arg(long)]
        username: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once.
    Add(ClientAddArgs),
    /// List registered clients (never their secrets).
    List,
}

#[derive(Debug, Args)]
struct ClientAddArgs {
    /// Client id (generated when absent).
    #[arg(long)]
    id: Option<String>,
    /// Display name.
    #[arg(long)]
    name: String,
    /// A public client (no secret, PKCE always).
    #[arg(long)]
    public: bool,
    /// Exact redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Exact post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Grant type (repeatable): authorization_code, refresh_token, client_credentials.
    #[arg(long = "grant-type", default_values = ["authorization_code", "refresh_token"])]
    grant_types: Vec<String>,
    /// Allowed scopes, space separated.
    #[arg(long, default_value = "openid profile email offline_access")]
    scope: String,
    /// First-party: skip the consent page.
    #[arg(long)]
    first_party: bool,
    /// Make PKCE optional (confidential clients only; OpenID requests must then carry a nonce).
    #[arg(long)]
    pkce_optional: bool,
    /// ID token signing algorithm: RS256 or ES256.
    #[arg(long, default_value = "RS256")]
    id_token_alg: String,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create new signing keys; the old public keys stay published until their tokens expire.
    Rotate,
}

/// A command failure: a message for the operator and a non-zero exit.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Start(#[from] server::StartError),
    #[error("{0}")]
    Registration(#[from] RegistrationError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Parses the command line, runs the command, and maps failure to exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn settings(cli: &Cli, serve: Option<&ServeArgs>) -> Result<Settings, CliError> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        master_key_file: cli.master_key_file.clone(),
        listen: serve.and_then(|s| s.listen),
        issuer: serve.and_then(|s| s.issuer.clone()),
        log_format: serve.and_then(|s| s.log_format),
    };
    Ok(Settings::resolve(file, overrides)?)
}

/// Sets up logging to stdout. Lines are written by a background thread, so a request never waits
/// on the terminal or pipe; when that thread falls behind, requests wait rather than lines being
/// dropped. The returned guard flushes what is left when it is dropped, at exit.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZARISH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    guard
}

/// Administrative commands work on an existing deployment: they refuse to create an empty store
/// or a new master key by accident (a typo in a path would otherwise give a fresh, empty system,
/// or secrets no server can check).
fn require_existing(settings: &Settings) -> Result<(), CliError> {
    if !settings.master_key_file.exists() {
        return Err(CliError::Usage(format!(
            "no master key at {}; start the server once first, or pass the right --data-dir / --master-key-file",
            settings.master_key_file.display()
        )));
    }
    if settings.database_url.is_none() && !settings.database_path().exists() {
        return Err(CliError::Usage(format!(
            "no zarish database at {}; start the server once first, or pass the right --data-dir / --database-url",
            settings.database_path().display()
        )));
    }
    Ok(())
}

/// The settings of an administrative command, checked to name an existing deployment.
fn admin_settings(cli: &Cli) -> Result<Settings, CliError> {
    let settings = settings(cli, None)?;
    require_existing(&settings)?;
    Ok(settings)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Serve(args) => {
            let settings = settings(&cli, Some(args))?;
            let _flush_on_exit = init_logging(settings.log_format);
            server::serve(settings, args.demo).await?;
        }
        Command::Org(OrgCommand::Add { id, name, country }) => {
            let ctx = server::open(admin_settings(&cli)?).await?;
            let org = Organization {
                id: id.clone(),
                name: name.clone(),
                country: country.clone(),
            };
            bootstrap::register_organization(&ctx.store, org, ctx.clock.now()).await?;
            println!("organization {id} added");
        }
        Command::User(UserCommand::Add {
            username,
            role,
            organization,
            given_name,
            family_name,
            email,
        }) => {
            let role: Role = role
                .parse()
                .map_err(|_| CliError::Usage(format!("unknown role '{role}'; see --help")))?;
            let password = read_password()?;
            let ctx = server::open(admin_settings(&cli)?).await?;
            let passwords = PasswordHasherPool::new(1).map_err(server::StartError::from)?;
            let spec = UserSpec {
                username: username.clone(),
                role,
                organization_id: organization.clone(),
                given_name: given_name.clone(),
                family_name: family_name.clone(),
                email: email.clone(),
                phone_number: None,
            };
            let user =
                bootstrap::register_user(&ctx.store, &passwords, spec, password, ctx.clock.now())
                    .await?;
            println!("user {} added with id {}", user.username, user.id);
        }
        Command::User(UserCommand::ResetMfa { username }) => {
            let ctx = server::open(admin_settings(&cli)?).await?;
            let user = find_user(&ctx, username).await?;
            ctx.store.delete_mfa(&user.id).await?;
            let ended = ctx
                .store
                .end_user_sessions(&user.id, ctx.clock.now())
                .await?;
            println!(
                "second factor of {username} removed and {ended} session(s) ended; they enrol again at next sign-in"
            );
        }
        Command::User(UserCommand::Sessions { username }) => {
            let ctx = server::open(admin_settings(&cli)?).await?;
            let user = find_user(&ctx, username).await?;
            let now = ctx.clock.now();
            for s in ctx.store.list_sessions(&user.id, now).await? {
                println!(
                    "{}\tstarted {}s ago\tauth {}\texpires in {}s",
                    s.id,
                    now - s.created_at,
                    s.amr,
                    s.expires_at - now
                );
            }
        }
        Command::User(UserCommand::Logout { username }) => {
            let ctx = server::open(admin_settings(&cli)?).await?;
            let user = find_user(&ctx, username).await?;
            let ended = ctx
                .store
                .end_user_sessions(&user.id, ctx.clock.now())
                .await?;
            println!("ended {ended} session(s) of {username}; their refresh tokens are revoked");
        }
        Command::Client(ClientCommand::Add(args)) => {
            let spec = client_spec(args)?;
            let ctx = server::open(admin_settings(&cli)?).await?;
            let (client, secret) =
                bootstrap::register_client(&ctx.store, &ctx.hash_key, spec, ctx.clock.now())
                    .await?;
            let mut out = json!({
                "client_id": client.client_id,
                "redirect_uris": client.redirect_uris,
                "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                "scope": client.scope.to_string(),
            });
            if let Some(secret) = secret {
                out["client_secret"] = json!(secret.expose());
                eprintln!("The client secret is shown only now. Store it safely.");
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Command::Client(ClientCommand::List) => {
            let ctx = server::open(admin_settings(&cli)?).await?;
            for c in ctx.store.list_clients().await? {
                let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.client_id,
                    c.kind.as_str(),
                    grants.join(","),
                    c.redirect_uris.join(","),
                    c.scope
                );
            }
        }
        Command::Migrate => {
            let ctx = server::open(settings(&cli, None)?).await?;
            println!("{} store is at the latest schema", ctx.store.backend());
        }
        Command::Backup { to } => {
            if to.exists() {
                return Err(CliError::Usage(format!(
                    "{} exists; choose a new file",
                    to.display()
                )));
            }
            let ctx = server::open(admin_settings(&cli)?).await?;
            ctx.store.backup_to(to).await?;
            println!("backup written to {}", to.display());
        }
        Command::Keys(KeysCommand::Rotate) => {
            let ctx = server::open(admin_settings(&cli)?).await?;
            let kids = ctx.vault.rotate(&ctx.store, ctx.clock.now()).await?;
            println!(
                "new signing keys: {}\nrunning servers switch within {} s",
                kids.join(", "),
                ctx.settings.key_refresh_interval
            );
        }
    }
    Ok(())
}

async fn find_user(ctx: &server::Context, username: &str) -> Result<crate::model::User, CliError> {
    ctx.store
        .find_user_by_username(username)
        .await?
        .ok_or_else(|| CliError::Usage(format!("no user named '{username}'")))
}

fn client_spec(args: &ClientAddArgs) -> Result<ClientSpec, CliError> {
    let grant_types = args
        .grant_types
        .iter()
        .map(|g| {
            g.parse::<GrantType>()
                .map_err(|_| CliError::Usage(format!("unknown grant type '{g}'")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scope =
        Scopes::parse(&args.scope).map_err(|_| CliError::Usage("malformed --scope".into()))?;
    let id_token_alg: SigningAlg = args
        .id_token_alg
        .parse()
        .map_err(|_| CliError::Usage("--id-token-alg must be RS256 or ES256".into()))?;
    if args.public && args.pkce_optional {
        return Err(CliError::Usage(
            "a public client always requires PKCE".into(),
        ));
    }
    Ok(ClientSpec {
        client_id: args.id.clone(),
        name: args.name.clone(),
        kind: if args.public {
            ClientKind::Public
        } else {
            ClientKind::Confidential
        },
        redirect_uris: args.redirect_uris.clone(),
        post_logout_redirect_uris: args.post_logout_redirect_uris.clone(),
        grant_types,
        scope,
        first_party: args.first_party,
        pkce_required: !args.pkce_optional,
        id_token_alg,
    })
}

fn read_password() -> Result<SecretString, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|_| CliError::Usage("cannot read the password".into()))?;
        let second = rpassword::prompt_password("Repeat password: ")
            .map_err(|_| CliError::Usage("cannot read the password".into()))?;
        let (first, second) = (SecretString::new(first), SecretString::new(second));
        if first != second {
            return Err(CliError::Usage("the passwords differ".into()));
        }
        return Ok(first);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|_| CliError::Usage("cannot read the password from stdin".into()))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::Usage("no password on stdin".into()));
    }
    Ok(SecretString::new(password))
}
