//! The command line, declared with clap. Every command has `--help`; read commands have `--json`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Writ: every access change needs a writ.
///
/// Every access change (for people and for non-human identities) goes through one change record
/// with one immutable change ID: request → approval → implementation → verification → review,
/// each step recorded as an event in an append-only ledger.
///
/// Exit codes: 0 ok; 2 invalid input; 3 refused by a control (separation of duties, state,
/// expiry, an execution already in progress); 4 not found; 5 store unavailable or concurrent
/// update (nothing was written); 6 a target could not be read or used (nothing was written on
/// it); 7 the change ran and its recorded outcome is failed or verification_failed (`change
/// show` says what each attempt wrote); 8 the ledger failed verification; 9 the targets were
/// written but the outcome could not be recorded (the attempt is recovered from the targets when
/// its claim ends); 1 anything else.
#[derive(Parser, Debug)]
#[command(name = "writ", version, propagate_version = true)]
pub struct Cli {
    /// The embedded SQLite database file.
    #[arg(long, global = true, env = "WRIT_DB", value_name = "FILE")]
    pub db: Option<PathBuf>,

    /// The ledger signing key file (default: the database path with `.key` appended).
    #[arg(long, global = true, env = "WRIT_LEDGER_KEY", value_name = "FILE")]
    pub ledger_key: Option<PathBuf>,

    /// The key that seals sensitive values in the ledger (default: the database path with
    /// `.hmac` appended).
    #[arg(long, global = true, env = "WRIT_HMAC_KEY", value_name = "FILE")]
    pub hmac_key: Option<PathBuf>,

    /// A Writ server to talk to instead of a local database; the API token is read from
    /// WRIT_TOKEN (never from an argument, which other users could see).
    #[arg(long, global = true, env = "WRIT_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Print machine-readable JSON instead of text (errors too, on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// How long an execution claim lasts unless its attempt renews it (1s to 1h; default 30s):
    /// how soon a change whose attempt died (a killed process) can be resumed.
    #[arg(long, global = true, env = "WRIT_CLAIM_TTL", value_name = "DURATION")]
    pub claim_ttl: Option<String>,

    /// Log more (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Top,
}

#[derive(Subcommand, Debug)]
pub enum Top {
    /// Create a new Writ database at --db.
    Init,
    /// Register and list identities (humans and non-human identities).
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Register targets (connected systems) and list their entitlements.
    #[command(subcommand)]
    Target(TargetCmd),
    /// Request, approve, execute, verify, review and inspect changes.
    #[command(subcommand)]
    Change(ChangeCmd),
    /// Evidence: attach files to a step of a change, list and fetch blobs by digest.
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Auditor bundles: write one from the database, or verify one offline with no database.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The tamper-evident ledger: checkpoints, verification, proofs.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Do what is due now: resume changes whose execution was cut off (a killed process) once
    /// its claim has ended, expire approved changes whose approval validity has ended, and end
    /// time-bound access whose duration is over, each through its own change linked to the
    /// grant's change (executed, verified, retried with backoff; alerted after N failures).
    /// `writ serve` does this every second on its own.
    RunDue(RunDueArgs),
    /// Retention: erase what the policy's `[retention]` says is past its term (the clear text
    /// of sealed values, evidence blobs) from closed changes not under legal hold. The events
    /// stay, so the ledger and bundles still verify; each erasure is a recorded event. `writ
    /// serve` does this every hour on its own.
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// A person's request to erase what Writ keeps about them: `writ erase --subject NAME --as
    /// PERSON --reference DSAR-12` records it; an admin who neither asked nor is its subject
    /// approves it (`writ erase approve ERS-… --as ADMIN`); then the clear text of the closed
    /// changes that concern them is erased (recorded on each, under rule `erasure.ERS-…`), the
    /// rest as they close; a legal hold keeps a change whole. Events and digests stay.
    Erase(EraseArgs),
    /// Break glass in an emergency: short, time-bound access granted and executed at once, for
    /// people policy allows (default pack: the incident-responders group). The change is marked
    /// emergency everywhere; someone else must approve it afterwards by the policy's deadline
    /// (default 24h) and it must be reviewed. A missed deadline opens a finding and an alert.
    /// Access ends by itself (default at most 1h) through `run-due` or the server.
    Breakglass(BreakglassArgs),
    /// Findings: what needs a person (access held with no approved change, accounts no identity
    /// owns, orphaned service accounts, long-lived secrets, a break-glass change not approved
    /// after the fact, …), each with severity, the controls it fails and its evidence.
    #[command(subcommand)]
    Finding(FindingCmd),
    /// Notifications: who was told of what (approval requests, escalations, decisions, break
    /// glass, findings) by email or a group's signed webhook, and whether it got through. They
    /// are written with the event they tell of and delivered by `writ serve` (`[notify]` in its
    /// configuration), retried on a schedule; one that never gets through is dead-lettered with
    /// a `notify.dead_letter` finding. Routes are policy: `[[notify]]` in rules.toml.
    #[command(subcommand)]
    Notify(NotifyCmd),
    /// Reconcile: read everything each target holds (not only what Writ granted), classify
    /// every (identity, entitlement) as linked, missing, unapproved, expired or unmatched
    /// against what Writ approved, raise findings (and resolve those no longer seen), and check
    /// the owners of non-human identities. Each run is recorded with the observed snapshot as
    /// evidence. A target that cannot be read fully gives a PARTIAL run: nothing missing is
    /// raised and nothing resolved from it. `writ serve` does this per target on an interval.
    Reconcile(ReconcileArgs),
    /// Automation paused because its source looked wrong: a target reconciliation could not
    /// read in full, or an identity provider feed removing more people at once than the
    /// policy's `[automation]` limits allow. What it would have done is held, not lost, and
    /// proceeds when a person resumes the scope.
    #[command(subcommand)]
    Automation(AutomationCmd),
    /// Exceptions: accepted risk for a control not met, owned, justified, approved like a
    /// change and time-bound; listed and exported.
    #[command(subcommand)]
    Exception(ExceptionCmd),
    /// Deliveries from other systems (IdP feeds, ITSM and SCM webhooks received by `writ
    /// serve` at /hooks/NAME): what each became, the changes it is attached to, and the queue
    /// of those no change could be found or opened for (`--outcome uncorrelated`).
    #[command(subcommand)]
    Intake(IntakeCmd),
    /// Policy as code: show, check, load, test and explain the policy (Cedar files and
    /// rules.toml in a directory you keep in git; without one, Writ's default pack is in force).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Run the HTTP API (see /api/v1/openapi.json) over --db, SQLite or PostgreSQL.
    Serve(ServeArgs),
    /// A checkpoint witness (C2SP tlog-witness), run apart from Writ, ideally on another host:
    /// it cosigns a log's checkpoint only if it extends the one it last cosigned, so a restored
    /// backup, a deleted tail or a forked history is caught by `writ ledger verify --witness`.
    #[command(subcommand)]
    Witness(WitnessCmd),
    /// API tokens: issue one for an identity (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Roles (requester, approver, executor, reviewer, admin, auditor) of identities.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Delegations: who may act on behalf of whom (request changes for them, approve in their
    /// name with --on-behalf-of), until when. Without one, naming someone else is refused.
    #[command(subcommand)]
    Delegation(DelegationCmd),
    /// Load generator for crash tests: registers identities from several threads and prints
    /// `ack NAME` after each durable commit.
    #[command(hide = true)]
    LoadAppend {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        threads: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum EvidenceCmd {
    /// Attach a file to a step of a change (at most 16 MiB); its SHA-256 goes into the ledger.
    Add {
        id: String,
        file: PathBuf,
        /// request, validation, approval, implementation, verification or review.
        #[arg(long)]
        step: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// Media type (default: application/octet-stream).
        #[arg(long, default_value = "application/octet-stream")]
        media_type: String,
    },
    /// List the evidence of a change.
    List { id: String },
    /// Write a blob to --out (or stdout), after checking its SHA-256.
    Get {
        sha256: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Write a self-contained bundle (events, inclusion proofs, checkpoints, public key,
    /// evidence, manifest) for one change or for the whole log.
    Bundle {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        change: Option<String>,
        #[arg(long)]
        all: bool,
        /// A new directory to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a bundle offline (no database) and print the reconstructed trail.
    Verify {
        path: PathBuf,
        /// Pin the ledger's public key (name+id+key) instead of trusting the one in the bundle.
        #[arg(long = "trusted-key", value_name = "KEY")]
        trusted: Vec<String>,
        /// A witness's cosigner key (repeatable): the bundle's checkpoint must carry a quorum of
        /// their cosignatures.
        #[arg(long = "witness-key", value_name = "KEY")]
        witness_keys: Vec<String>,
        /// How many of the --witness-key witnesses must have cosigned (default: all).
        #[arg(long, value_name = "K", requires = "witness_keys")]
        witness_quorum: Option<usize>,
        /// A witness to ask now, as KEY@URL (repeatable): one that has seen a larger tree of this
        /// log, or another history, shows the bundle comes from a rolled-back or forked log.
        #[arg(long = "witness", value_name = "KEY@URL")]
        witnesses: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WitnessCmd {
    /// Create the witness's key (mode 0600) and print its verifier key, which Writ's
    /// `--witness` names.
    Init {
        /// The witness's name, a schema-less URL (example.com/witness).
        #[arg(long)]
        name: String,
        /// Where to create the private key (refused if it exists).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Serve `POST /add-checkpoint` until SIGINT or SIGTERM.
    Serve {
        #[arg(long, value_name = "FILE", env = "WRIT_WITNESS_KEY")]
        key: PathBuf,
        /// The file holding the newest checkpoint cosigned per log (created if absent; written
        /// atomically before each cosignature is returned).
        #[arg(long, value_name = "FILE", env = "WRIT_WITNESS_STATE")]
        state: PathBuf,
        /// A log this witness accepts: its checkpoint verifier key (`writ ledger checkpoint
        /// --json` prints it as `key`); repeatable.
        #[arg(long = "log-key", value_name = "KEY", required = true)]
        logs: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:8751")]
        listen: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Sign a checkpoint (C2SP signed note) over every event recorded so far and print it.
    Checkpoint,
    /// Recompute every leaf hash and root, check every checkpoint's signature and consistency;
    /// exit 8 naming the first bad index if anything is wrong.
    Verify {
        /// A public key to trust (name+id+key); repeatable. The signing key's own public half is
        /// trusted when the key file is readable.
        #[arg(long = "trusted-key", value_name = "KEY")]
        trusted: Vec<String>,
        /// Skip decoding every record (hashes and signatures only).
        #[arg(long)]
        shallow: bool,
        /// A witness to check the database against, as KEY@URL (repeatable): the newest
        /// checkpoint must carry a quorum of cosignatures, and no witness may have cosigned a
        /// larger tree (a restored backup or deleted tail) or another history (a fork).
        #[arg(long = "witness", env = "WRIT_WITNESSES", value_name = "KEY@URL", value_delimiter = ',')]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned the newest checkpoint (default: all).
        #[arg(long, env = "WRIT_WITNESS_QUORUM", value_name = "K")]
        witness_quorum: Option<usize>,
    },
    /// Rotate the checkpoint signing key. Without --retire: a new key joins the key file
    /// (`ledger.key_added`), and from now on old and new both sign every checkpoint, so
    /// verifiers holding either keep working while they are given the new one. With --retire
    /// KEY_ID: that key leaves the file (`ledger.key_retired`); verify then refuses any later
    /// checkpoint that rests on it alone. Local only: the key file is on this machine.
    RotateKey {
        /// The id (8 hex digits) of the key to retire; at least one other key must remain.
        #[arg(long, value_name = "KEY_ID")]
        retire: Option<String>,
    },
    /// Put tables that diverged from the ledger back to what its events say, recorded as one
    /// `ledger.projections_repaired` event naming every row, then sign a checkpoint. Local only:
    /// the authority is access to the database and its keys, not a table that may be the one
    /// that diverged. Exit 8 if something could not be restored from the ledger alone.
    Repair {
        /// Rebuild the projections (roles, tokens, identities, targets, policies, changes,
        /// grants, findings, exceptions, delegations, SCIM links; tampered clear text is erased).
        #[arg(long, required = true)]
        projections: bool,
    },
    /// Print the seal the ledger records for VALUE (a keyed commitment), so an auditor can check
    /// a sealed justification, reason or note against the text they were given.
    Hash { value: String },
    /// Print an inclusion proof (--index N) or a consistency proof (--from A --to B).
    Prove {
        #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
        index: Option<u64>,
        #[arg(long, requires = "to")]
        from: Option<u64>,
        #[arg(long, requires = "from")]
        to: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum IdentityCmd {
    /// Register an identity. Non-human identities need an accountable human --owner.
    Add {
        /// Unique name (letters, digits, . _ @ + -).
        name: String,
        /// human, service_account, api_key, secret, certificate, workload or ai_agent.
        #[arg(long)]
        kind: String,
        /// The accountable human owner (required for non-human identities).
        #[arg(long)]
        owner: Option<String>,
        /// The vendor organisation a delegated identity acts for.
        #[arg(long)]
        vendor: Option<String>,
        /// Where notifications reach it by email (approval requests, decisions, findings).
        #[arg(long)]
        email: Option<String>,
        /// Who registers it (defaults to the local administrator).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
    /// List identities.
    List,
    /// Show one identity and the grants Writ implemented for it.
    Show { name: String },
    /// Offboard NAME: it stops acting in Writ at once (as `disable`, state offboarded), and the
    /// change is opened that removes everything it holds: every entitlement any target shows it
    /// holding, and every grant Writ recorded (event leaver for a human, decommission for a
    /// non-human identity). The change is approved and executed like any change, and verifies
    /// only when every target shows nothing left. With nothing held anywhere, no change is
    /// opened and NAME is offboarded all the same.
    Offboard {
        name: String,
        /// The requester (over --server: the token's identity, an admin).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
        /// Why (for example the HR record of the departure).
        #[arg(long)]
        justification: String,
        /// ITSM ticket reference (repeatable).
        #[arg(long)]
        ticket: Vec<String>,
    },
    /// Disable NAME: its tokens are revoked, its roles suspended (kept, not in force), the
    /// approvals it gave to changes still waiting for approval or execution no longer count,
    /// and the non-human identities it owns are flagged for ownership transfer. Its access on
    /// targets stays until a change removes it (see `offboard`).
    Disable {
        name: String,
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
        /// Who disables it (defaults to the local administrator).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
    /// Link NAME, an existing person, to the identity provider's record of them: a SCIM User
    /// whose userName is NAME and whose externalId is ID then adopts NAME (keeping its history)
    /// instead of being refused.
    LinkScim {
        name: String,
        /// The identity provider's externalId for the person.
        #[arg(long = "external-id", value_name = "ID")]
        external_id: String,
        /// Who links them (defaults to the local administrator).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
    /// Ask that TO become the accountable owner of the non-human identity NAME (an orphaned
    /// one, or one whose owner moves on). Asked by its owner, by TO, or by an admin; accepted by
    /// someone else: TO, or when TO asked, the current owner (an admin if the owner is gone).
    /// Pending until decided, for at most 7 days; a new request supersedes a pending one.
    /// Accepting it resolves the `nhi.orphaned` finding about NAME.
    Transfer {
        /// The non-human identity to hand over.
        name: String,
        /// The person who is to own it.
        #[arg(long)]
        to: String,
        /// Who asks (over --server: the token's identity).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// Why (recorded in the ledger).
        #[arg(long)]
        justification: String,
    },
    /// List transfers of ownership (of NAME only, when given), oldest first.
    Transfers {
        /// Only the transfers of this identity.
        name: Option<String>,
    },
    /// Accept a pending transfer: its identity's owner is then the new owner.
    AcceptTransfer(TransferDecisionArgs),
    /// Decline a pending transfer: the owner stays as it is.
    DeclineTransfer(TransferDecisionArgs),
    /// Withdraw a pending transfer you asked for.
    CancelTransfer(TransferDecisionArgs),
    /// Make a disabled or offboarded NAME active again. Its roles are in force again; tokens
    /// revoked when it was disabled stay revoked (issue new ones).
    Enable {
        name: String,
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
        /// Who enables it (defaults to the local administrator).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
}

/// A decision on a transfer of ownership.
#[derive(clap::Args, Debug)]
pub struct TransferDecisionArgs {
    /// The transfer (TRF-…).
    pub id: String,
    /// Who decides (over --server: the token's identity).
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: String,
    /// What you say about it (recorded in the ledger).
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TargetCmd {
    /// Register a target: `--connector` names its connector, and the options below marked with
    /// that connector's name are its settings.
    Add(Box<TargetAddArgs>),
    /// List targets.
    List,
    /// List the entitlements a target offers, read from the target.
    Entitlements { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ChangeCmd {
    /// Request a change; prints its change ID.
    Request(Box<RequestArgs>),
    /// Approve a pending change (never your own).
    Approve {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// Approve on behalf of another approver (both are recorded).
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// Keep the approval valid for less than policy allows (for example 1h).
        #[arg(long, value_name = "DURATION")]
        valid_for: Option<String>,
    },
    /// Reject a pending change, with a reason. Final for this change.
    Reject {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a change that has not been implemented.
    Cancel {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// Implement an approved change on its targets (by the Writ engine unless --as names a person).
    Execute {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
    /// Observe the targets and compare with the approved state; only equality verifies.
    Verify { id: String },
    /// Close a verified (or verification_failed) change as an independent reviewer.
    Review {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long, default_value = "reviewed")]
        notes: String,
    },
    /// Comment on a change, in any state: the people it concerns, and approvers, executors,
    /// reviewers, auditors and admins. The text is sealed in the ledger like a justification.
    Comment {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// The comment (at most 2000 characters; line breaks allowed).
        text: String,
    },
    /// Ask to undo a change that was carried out: a new change with the inverse operations (a
    /// grant revoked, a revocation granted back, a rotation rolled forward to a new credential),
    /// linked both ways and approved like any other; the requester of the undone change may not
    /// approve it. Asked by its rollback owner, who asked for it, or an admin.
    Rollback {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// Why it is undone.
        #[arg(long)]
        justification: String,
    },
    /// Place a legal hold (an admin or an auditor): nothing of the change is erased under
    /// retention until it is lifted.
    Hold {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift a legal hold (an admin or an auditor).
    Release {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// Show the whole trail: who asked, approved, executed, what changed, verification, review.
    Show { id: String },
    /// List changes, newest first.
    List {
        /// Only changes in this state (for example pending_approval).
        #[arg(long)]
        state: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The requester.
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: String,
    /// The identity whose access changes.
    #[arg(long)]
    pub identity: String,
    /// Entitlement to grant, as TARGET:ENTITLEMENT (repeatable).
    #[arg(long, value_name = "TARGET:ENTITLEMENT")]
    pub grant: Vec<String>,
    /// Entitlement to revoke, as TARGET:ENTITLEMENT (repeatable).
    #[arg(long, value_name = "TARGET:ENTITLEMENT")]
    pub revoke: Vec<String>,
    /// Credential to rotate, as TARGET:ENTITLEMENT (repeatable): the target issues a new one
    /// to the identity and retires the previous one (OpenBao targets).
    #[arg(long, value_name = "TARGET:ENTITLEMENT")]
    pub rotate: Vec<String>,
    /// Make the grants time-bound (for example 8h, 7d, 1h30m).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why the access is needed.
    #[arg(long)]
    pub justification: String,
    /// ITSM ticket reference (repeatable).
    #[arg(long)]
    pub ticket: Vec<String>,
    /// SCM commit reference (repeatable).
    #[arg(long)]
    pub commit: Vec<String>,
    /// Pull or merge request reference (repeatable).
    #[arg(long)]
    pub pr: Vec<String>,
    /// The business event: joiner, mover, leaver, deploy, decommission, incident, vendor, adhoc.
    #[arg(long, default_value = "adhoc")]
    pub event: String,
    /// The person the requester acts for (both are recorded).
    #[arg(long)]
    pub on_behalf_of: Option<String>,
    /// Start of the maintenance window the change must be carried out in: RFC 3339
    /// (2026-12-08T21:00:00Z) or a local time in --window-zone (2026-12-08T22:00). Execution
    /// outside the window is refused; once it has passed, the approved change expires.
    #[arg(long, value_name = "TIME", requires = "window_end")]
    pub window_start: Option<String>,
    /// End of the maintenance window (excluded), in the same forms as --window-start.
    #[arg(long, value_name = "TIME", requires = "window_start")]
    pub window_end: Option<String>,
    /// The IANA time zone the window is given in (Europe/Berlin, America/New_York, UTC).
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub window_zone: String,
    /// The person who answers for undoing the change (by default the policy's `[rollback]
    /// owners`: an NHI's owner, the entitlement's owner, the requester).
    #[arg(long, value_name = "PERSON")]
    pub rollback_owner: Option<String>,
}

impl RequestArgs {
    /// The maintenance window the options give, as the API's body takes it.
    pub fn window(&self) -> Option<writ_api::wire::WindowBody> {
        let (start, end) = (self.window_start.clone()?, self.window_end.clone()?);
        Some(writ_api::wire::WindowBody { start, end, zone: self.window_zone.clone() })
    }
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EraseArgs {
    #[command(subcommand)]
    pub command: Option<EraseCmd>,
    /// The person whose data is to be erased.
    #[arg(long, requires_all = ["actor", "reference"])]
    pub subject: Option<String>,
    /// Who asks (recorded).
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: Option<String>,
    /// The request's reference (a ticket id; recorded in clear, so no personal data).
    #[arg(long)]
    pub reference: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum EraseCmd {
    /// Approve a request (an admin who neither asked for it nor is its subject), then erase.
    Approve {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
    },
    /// Every erasure request, with who asked and who approved.
    List,
}

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Erase what is past its term now, and print what was erased and what a legal hold kept.
    Run,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token bound to an identity. The token is printed once and stored only as a keyed
    /// hash; keep it in a secret store.
    Create {
        /// The identity the token acts as.
        #[arg(long)]
        identity: String,
        /// What the token is for (shown in listings).
        #[arg(long)]
        label: String,
        /// Lifetime, for example 30d or 12h (at most 366d).
        #[arg(long, default_value = "30d")]
        expires_in: String,
    },
    /// Every token: id, identity, label, expiry, revocation (never the secret).
    List,
    /// Revoke a token by its id; it stops working at once.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// Assign a role to an identity.
    Grant { identity: String, role: String },
    /// Remove a role from an identity.
    Revoke { identity: String, role: String },
    /// Every role assignment.
    List,
}

#[derive(Subcommand, Debug)]
pub enum DelegationCmd {
    /// Let DELEGATE act on behalf of PRINCIPAL for a while (at most 366 days); granting again
    /// moves the end. By PRINCIPAL (--as) or an admin.
    Grant {
        principal: String,
        delegate: String,
        /// How long it lasts, e.g. 14d.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Who grants it (defaults to the local administrator; over --server, the token's identity).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
    /// End a delegation before its end. By its principal, its delegate or an admin.
    Revoke {
        principal: String,
        delegate: String,
        /// Who ends it (defaults to the local administrator; over --server, the token's identity).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
    /// Delegations, with whether each is in force.
    List,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// The policy in force: its hash, tiers, workflow rules, Cedar policies and the controls
    /// (NIST CSF 2.0, OWASP NHI Top 10) each implements.
    Show,
    /// Check a policy directory without loading it: exit 2 with FILE:LINE: reason if invalid.
    Check {
        #[arg(long, env = "WRIT_POLICY_DIR")]
        dir: PathBuf,
    },
    /// Load a policy directory and put it in force, recorded in the ledger as policy.loaded. An
    /// invalid policy is refused (exit 2, FILE:LINE: reason) and the policy in force stays.
    /// With --server, the server reloads the directory it was started with.
    Reload {
        #[arg(long, env = "WRIT_POLICY_DIR")]
        dir: Option<PathBuf>,
    },
    /// Run policy test cases: every tests/*.toml of --dir against that policy, or without --dir
    /// the default pack's own cases. Exit 1 if any case fails.
    Test {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Which policy (by hash) and which rules decided each step of a change, with the controls
    /// they implement; validation is replayed under the recorded policy and under the one in
    /// force.
    Explain { id: String },
}

#[derive(Args, Debug)]
pub struct BreakglassArgs {
    /// The person breaking glass; they carry out the change themselves.
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: String,
    /// The identity that gets access (default: the person breaking glass).
    #[arg(long)]
    pub identity: Option<String>,
    /// Entitlement to grant, as TARGET:ENTITLEMENT (repeatable, at least one).
    #[arg(long, value_name = "TARGET:ENTITLEMENT", required = true)]
    pub grant: Vec<String>,
    /// How long the access lasts (default and maximum: the policy's `[breakglass] max_duration`).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// What the emergency is.
    #[arg(long)]
    pub reason: String,
    /// Incident or ticket reference (repeatable).
    #[arg(long)]
    pub ticket: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum NotifyCmd {
    /// List notifications, newest first.
    List {
        /// Only those in this state: pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// Only those about this change.
        #[arg(long)]
        change: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One notification with its delivery so far.
    Show { id: String },
    /// Try a dead (or pending) notification again now, after fixing its channel (an admin's).
    /// Its attempts are kept; it gets the same id, so receivers still deduplicate it.
    Retry {
        id: String,
        /// Who asks (defaults to the local administrator).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FindingCmd {
    /// List findings, ordered by id.
    List {
        /// Only findings in this state: open, excepted or resolved.
        #[arg(long)]
        state: Option<String>,
    },
    /// One finding in full.
    Show { id: String },
    /// Open the change that fixes a finding, requested by you through policy and approvals:
    /// unapproved or expired access is revoked, missing access granted again, a long-lived
    /// secret rotated, an unmatched account decommissioned (an admin's: it is registered as a
    /// service account you own and offboarded, which revokes all it holds). The finding is
    /// resolved once that change is verified on the target. An orphaned NHI is handed over with
    /// `writ identity transfer` instead.
    Remediate {
        id: String,
        /// Who requests the fix.
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// Why, beyond the finding itself (default: the finding's own detail).
        #[arg(long)]
        justification: Option<String>,
    },
    /// Close an open finding without a fix, saying why (recorded); prefer `remediate`, or an
    /// exception for accepted risk.
    Resolve {
        id: String,
        /// Who resolves it.
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// What was done.
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AutomationCmd {
    /// The paused scopes (`scim`, `target:NAME`), each with why and since when.
    Status,
    /// Resume a paused scope: you take responsibility that its source is right again (or that
    /// what it asks is right), recorded with your justification; the held steps proceed.
    Resume {
        /// `scim` or `target:NAME`.
        scope: String,
        /// Who resumes it (an active person).
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        justification: String,
    },
}

/// `writ reconcile`.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Only this target (default: every target, then the registry's owners).
    #[arg(long)]
    pub target: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ExceptionCmd {
    /// Ask for an exception: accept, for a while, that a control is not met for one subject
    /// (for example a long-lived secret that cannot rotate yet). It needs approvals like a
    /// change (default pack: two people, one internal, neither its requester nor its owner);
    /// while active it covers the findings of that control about that subject; when it
    /// expires they open again.
    Request(ExceptionRequestArgs),
    /// Approve the pending request or renewal of an exception.
    Approve {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
    },
    /// Refuse the pending request (it ends rejected) or renewal (the current term stays).
    Reject {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// Ask for an active exception to last longer: a new approval round while the current
    /// term runs; unapproved by the expiry, the exception expires. Its requester or owner only.
    Renew {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        /// The new term, from now (for example 30d); at most the policy's maximum.
        #[arg(
            long = "for",
            value_name = "DURATION",
            conflicts_with = "until",
            required_unless_present = "until"
        )]
        duration: Option<String>,
        /// The new end of the term (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why it is still needed.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a pending or active exception now; the findings it covered open again.
    Revoke {
        id: String,
        #[arg(long = "as", value_name = "ACTOR")]
        actor: String,
        #[arg(long)]
        reason: String,
    },
    /// List exceptions, ordered by id.
    List {
        /// Only exceptions in this state: pending, active, rejected, expired or revoked.
        #[arg(long)]
        state: Option<String>,
        /// Only live exceptions that end within this duration (for example 14d): those that
        /// need renewing.
        #[arg(long, value_name = "DURATION")]
        expiring_within: Option<String>,
    },
    /// One exception in full.
    Show { id: String },
    /// Export exceptions as CSV (RFC 4180, with a header row) or JSON, to stdout or a file.
    Export {
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Only exceptions in this state.
        #[arg(long)]
        state: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct ExceptionRequestArgs {
    /// Who asks.
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: String,
    /// The finding this exception is for: its control and subject are taken from it.
    #[arg(long, value_name = "FINDING", conflicts_with_all = ["control", "subject"])]
    pub finding: Option<String>,
    /// The control not met, as the kind of finding it raises (for example secret.long_lived).
    #[arg(long, requires = "subject", required_unless_present = "finding")]
    pub control: Option<String>,
    /// What it is about, as the findings name it: an identity, a change ID, TARGET:ENTITLEMENT.
    #[arg(long, requires = "control")]
    pub subject: Option<String>,
    /// The person who carries the risk and the compensating control.
    #[arg(long)]
    pub owner: String,
    /// Why the control cannot be met now.
    #[arg(long)]
    pub justification: String,
    /// What is done instead while the control is not met.
    #[arg(long = "compensating-control", value_name = "TEXT")]
    pub compensating_control: String,
    /// How long it lasts from now (for example 30d); at most the policy's maximum (default
    /// pack: 90d).
    #[arg(
        long = "for",
        value_name = "DURATION",
        conflicts_with = "until",
        required_unless_present = "until"
    )]
    pub duration: Option<String>,
    /// When it ends (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunDueArgs {
    /// Failed attempts to end time-bound access after which its change carries an alert.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub alert_after: u32,
}

#[derive(Args, Debug)]
pub struct TargetAddArgs {
    pub name: String,
    /// The connector (what each one is comes from the connector registry).
    #[arg(long)]
    pub connector: String,
    #[command(flatten)]
    pub settings: ConnectorSettings,
    /// Who registers it (defaults to the local administrator).
    #[arg(long = "as", value_name = "ACTOR")]
    pub actor: Option<String>,
}

/// The settings options of every registered connector, made from the connector registry (each
/// connector crate says what its options mean), by option name without the dashes.
#[derive(Debug, Default)]
pub struct ConnectorSettings {
    pub given: std::collections::BTreeMap<String, String>,
}

impl ConnectorSettings {
    /// Every option with the connectors that take it and what it means for each.
    /// Connectors that give an option the same meaning share one sentence.
    fn options() -> std::collections::BTreeMap<&'static str, Vec<String>> {
        let mut options: std::collections::BTreeMap<&'static str, Vec<(Vec<&str>, &str)>> =
            std::collections::BTreeMap::new();
        for registration in writ_server::targets::public() {
            for setting in registration.settings {
                let meanings = options.entry(setting.flag).or_default();
                match meanings.iter_mut().find(|(_, help)| *help == setting.help) {
                    Some((names, _)) => names.push(registration.name),
                    None => meanings.push((vec![registration.name], setting.help)),
                }
            }
        }
        options
            .into_iter()
            .map(|(flag, meanings)| {
                (
                    flag,
                    meanings
                        .into_iter()
                        .map(|(names, help)| format!("{}: {help}", names.join(", ")))
                        .collect(),
                )
            })
            .collect()
    }

    /// The connectors and what each one's targets are, for `--connector`'s help.
    fn connectors() -> String {
        let lines: Vec<String> =
            writ_server::targets::public().map(|r| format!("{}: {}", r.name, r.summary)).collect();
        format!("The connector. {}.", lines.join("; "))
    }
}

impl clap::FromArgMatches for ConnectorSettings {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<ConnectorSettings, clap::Error> {
        let mut given = std::collections::BTreeMap::new();
        for flag in ConnectorSettings::options().into_keys() {
            if let Some(value) = matches.get_one::<String>(flag) {
                given.insert(flag.to_owned(), value.clone());
            }
        }
        Ok(ConnectorSettings { given })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = ConnectorSettings::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for ConnectorSettings {
    fn augment_args(command: clap::Command) -> clap::Command {
        // `--connector` is the field before this one in `TargetAddArgs`, so it is defined here.
        let command = command.mut_arg("connector", |arg| arg.help(ConnectorSettings::connectors()));
        ConnectorSettings::options().into_iter().fold(command, |command, (flag, helps)| {
            command.arg(clap::Arg::new(flag).long(flag).help(format!("{}.", helps.join("; "))))
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        ConnectorSettings::augment_args(command)
    }
}

#[derive(Subcommand, Debug)]
pub enum IntakeCmd {
    /// Deliveries, most recently updated first.
    List {
        /// Only deliveries with this outcome: correlated, late, uncorrelated, refused, ignored.
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One delivery: where it came from, the SHA-256 of its bytes, what it became.
    Show { source: String, id: String },
}

/// `writ serve`: flags and environment variables, each overriding the configuration file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// A TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "WRIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "WRIT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Most requests served at once (each runs its database work on a pool thread).
    #[arg(long, env = "WRIT_WORKERS")]
    pub workers: Option<usize>,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "WRIT_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Requests per second each source address, and each identity, may send (bursts of twice
    /// that); over it the server answers 429 with Retry-After. 0 turns the limits off
    /// (default: 300).
    #[arg(long, env = "WRIT_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,
    /// Refused webhook deliveries (bad signature, stale timestamp, …) are security events, but a
    /// flood must not grow the ledger: the first refusal of a hook for a reason in each window
    /// is recorded on its own, the rest as one count when the window ends (1s to 1h; default 1m).
    #[arg(long, env = "WRIT_REFUSAL_WINDOW", value_name = "DURATION")]
    pub refusal_window: Option<String>,
    /// Every write is answered once a signed checkpoint covers it (no acknowledged event can be
    /// deleted without trace); one checkpoint covers every write of its interval, so while
    /// writes arrive the server signs about once per interval (10ms to 10s; default 1s), and a
    /// write waits about one interval for its checkpoint.
    #[arg(long, env = "WRIT_CHECKPOINT_INTERVAL", value_name = "DURATION")]
    pub checkpoint_interval: Option<String>,
    /// A witness (`writ witness serve`, or any C2SP tlog-witness) every checkpoint is sent to,
    /// as KEY@URL: its cosigner key and its URL prefix; repeatable. A witness that is down does
    /// not hold writes back; it is caught up when it answers again.
    #[arg(long = "witness", env = "WRIT_WITNESSES", value_name = "KEY@URL", value_delimiter = ',')]
    pub witnesses: Vec<String>,
    /// How many witnesses must cosign a checkpoint for it to count as published (default: all).
    #[arg(long, env = "WRIT_WITNESS_QUORUM", value_name = "K")]
    pub witness_quorum: Option<usize>,
    /// The URL clients reach this server at (behind a proxy, the proxy's), for the absolute URLs
    /// it writes (SCIM meta.location); default: http:// and the bound address.
    #[arg(long, env = "WRIT_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// A proxy in front of the server (repeatable, or comma-separated in the variable) whose
    /// X-Forwarded-For names the client address for the per-address rate limit; from any other
    /// peer the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "WRIT_TRUSTED_PROXIES",
        value_name = "ADDRESS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Also accept OIDC bearer tokens (JWTs) from this issuer, verified with its published keys.
    #[arg(long, env = "WRIT_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// The audience an OIDC token must be for (its `aud`); required with --oidc-issuer.
    #[arg(long, env = "WRIT_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The claim that names the Writ identity (default: sub).
    #[arg(long, env = "WRIT_OIDC_CLAIM")]
    pub oidc_claim: Option<String>,
    /// Failed attempts to end time-bound access after which the expiry change carries an alert
    /// (retries continue with backoff: 1 s doubling up to 5 min).
    #[arg(long, env = "WRIT_EXPIRY_ALERT_ATTEMPTS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub expiry_alert_attempts: Option<u32>,
    /// A policy directory (Cedar files and rules.toml) to load at start and on
    /// `POST /api/v1/policy/reload`. An invalid policy stops the start with FILE:LINE: reason.
    #[arg(long, env = "WRIT_POLICY_DIR", value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    /// How often each target (and the registry's owners) is reconciled on its own: everything
    /// it holds observed and compared with what Writ approved, findings raised and resolved
    /// (1m to 7d, or `off`; default 1h; per target in the configuration file's
    /// `[reconcile_intervals]`). The first run is at start unless another instance ran it
    /// within the interval. `writ reconcile` and `POST /api/v1/reconcile` run one at once.
    #[arg(long, env = "WRIT_RECONCILE_INTERVAL", value_name = "DURATION")]
    pub reconcile_interval: Option<String>,
}

impl From<ServeArgs> for writ_server::ServeOptions {
    fn from(args: ServeArgs) -> writ_server::ServeOptions {
        let ServeArgs {
            config,
            listen,
            workers,
            max_body_bytes,
            rate_limit,
            refusal_window,
            checkpoint_interval,
            witnesses,
            witness_quorum,
            public_url,
            trusted_proxies,
            oidc_issuer,
            oidc_audience,
            oidc_claim,
            expiry_alert_attempts,
            policy_dir,
            reconcile_interval,
        } = args;
        writ_server::ServeOptions {
            config,
            listen,
            workers,
            max_body_bytes,
            rate_limit,
            refusal_window,
            checkpoint_interval,
            witnesses,
            witness_quorum,
            public_url,
            trusted_proxies,
            oidc_issuer,
            oidc_audience,
            oidc_claim,
            expiry_alert_attempts,
            policy_dir,
            claim_ttl: None,
            reconcile_interval,
        }
    }
}
