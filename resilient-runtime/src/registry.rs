//! The static registry of every annotated operation.
//!
//! `#[resilient]` submits one [`Registration`] per method through `inventory`; the
//! runtime reads them all when it is built, validates every policy, and gives each
//! one its slot in the runtime's operation table.

use std::sync::atomic::AtomicUsize;

use crate::policy::Policy;

/// One annotated operation, as submitted by the generated code.
#[derive(Debug)]
pub struct Registration {
    policy: &'static Policy,
}

impl Registration {
    /// Wraps a policy for `inventory::submit!`.
    pub const fn new(policy: &'static Policy) -> Self {
        Registration { policy }
    }

    /// The registered policy.
    pub const fn policy(&self) -> &'static Policy {
        self.policy
    }
}

inventory::collect!(Registration);

/// Every policy the binary registered through `#[resilient]`.
pub fn registered() -> impl Iterator<Item = &'static Policy> {
    inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.policy)
}

/// Next free process-wide slot. Slots are shared by all runtimes of the process, so a
/// policy keeps one slot however many isolated runtimes are built in tests.
pub(crate) static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
