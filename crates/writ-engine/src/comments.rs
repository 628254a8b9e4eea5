//! Comments on a change: by the people it concerns (`writ change comment`, the API, the web
//! page), and from a ticket through intake (a Jira comment, a ServiceNow work note), each
//! sealed in the ledger like a justification.
//!
//! A ticket's comment carries its id in that system: the core takes it once per change, so a
//! comment delivered twice (a retry, or in a later delivery) is attached once, and one written
//! before another of the same source already here is attached and marked late.

use writ_core::change::{ChangeId, CommentSource};
use writ_core::identity::{Actor, SystemActor};
use writ_core::machine::{Command, decide};
use writ_core::name::IdentityName;
use writ_intake::TicketComment;

use crate::intake::Source;
use crate::{ChangeRecord, Engine, EngineError, Result, evidence};

impl Engine {
    /// Records `text` as `actor`'s comment on a change: anyone it concerns, or an approver,
    /// executor, reviewer, auditor or admin (see `writ_core::authority::may_comment`).
    pub fn comment(&self, id: &ChangeId, actor: &IdentityName, text: String) -> Result<ChangeRecord> {
        let name = self.actor(actor)?.name;
        let record = self.load(id)?;
        let command = Command::Comment { author: Actor::Identity(name.clone()), text, source: None };
        // The floor first (the text itself), then whose change it is.
        decide(Some(&record.change), command.clone(), self.clock.now())?;
        writ_core::authority::may_comment(&record.change, &name, &self.store.roles_of(&name)?)?;
        self.transition_from(record, command, evidence::Captured::default())
    }

    /// Attaches a ticket's comment to a change: its author is the identity the source maps the
    /// account to (while active), else intake; a comment already attached adds nothing.
    pub(crate) fn comment_from(
        &self,
        source: &Source,
        comment: &TicketComment,
        id: &ChangeId,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        let mapped = comment.account.as_ref().and_then(|a| source.accounts.get(a));
        let author = match mapped.map(|name| self.actor(name)) {
            Some(Ok(identity)) => Actor::Identity(identity.name),
            _ => Actor::System(SystemActor::Intake),
        };
        let command = Command::Comment {
            author,
            text: comment.body.clone(),
            source: Some(CommentSource {
                source: source.name.clone(),
                id: comment.id.clone(),
                account: comment.account.clone(),
                written_at: comment.written_at,
            }),
        };
        match self.transition(id, command) {
            Ok(record) => {
                let late = record.change.comments.last().is_some_and(|c| c.late);
                let order = if late { " (written before one already here: marked late)" } else { "" };
                notes.push(format!("comment {} attached to {id}{order}", comment.id));
                Ok(())
            }
            Err(EngineError::Refused(refusal)) if refusal.code() == "comment.duplicate" => {
                notes.push(format!("comment {} was already on {id}", comment.id));
                Ok(())
            }
            Err(EngineError::Refused(refusal)) if refusal.code().starts_with("comment.") => {
                notes.push(format!("comment {} not attached: {refusal}", comment.id));
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}
