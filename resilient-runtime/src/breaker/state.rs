//! The breaker's public state and the packed word that stores it.

use std::fmt;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are rejected until the reset timeout has passed.
    Open,
    /// A bounded number of trial calls decide whether to close or re-open.
    HalfOpen,
}

impl BreakerState {
    /// A short lowercase name, used in logs and metric labels:
    /// `"closed"`, `"open"` or `"half_open"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Largest value of each 16-bit half-open field; configuration is clamped to it.
pub(super) const HALF_OPEN_FIELD_MAX: u32 = 0xFFFF;

const TAG_SHIFT: u32 = 62;
const GEN_SHIFT: u32 = 32;
const GEN_MASK: u32 = (1 << 30) - 1;
const TAG_CLOSED: u64 = 0;
const TAG_OPEN: u64 = 1;
const TAG_HALF_OPEN: u64 = 2;

/// Everything that must change together, in one `u64` so that one CAS moves it.
///
/// ```text
///  63 62 61                      32 31                 16 15                  0
/// [ tag ][ generation (30 bits)   ][ payload (32 bits)                        ]
///   Closed:                         failure count (u32)
///   Open:                           0
///   HalfOpen:                       trial successes (u16)  trials in flight (u16)
/// ```
///
/// The generation goes up by one on every transition, so a permit that remembers the
/// tag and generation it was issued under can tell whether it is stale. It wraps after
/// 2^30 transitions, far beyond the lifetime of any permit. The all-zero word is
/// "closed, generation 0, no failures".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Word(u64);

impl Word {
    pub(super) const INITIAL: Word = Word(0);

    pub(super) const fn from_raw(raw: u64) -> Word {
        Word(raw)
    }

    pub(super) const fn raw(self) -> u64 {
        self.0
    }

    const fn pack(tag: u64, generation: u32, payload: u32) -> Word {
        Word((tag << TAG_SHIFT) | (((generation & GEN_MASK) as u64) << GEN_SHIFT) | payload as u64)
    }

    pub(super) const fn closed(generation: u32, failures: u32) -> Word {
        Word::pack(TAG_CLOSED, generation, failures)
    }

    pub(super) const fn open(generation: u32) -> Word {
        Word::pack(TAG_OPEN, generation, 0)
    }

    /// Both counts must be at most [`HALF_OPEN_FIELD_MAX`]; callers clamp the config so
    /// that they are.
    pub(super) const fn half_open(generation: u32, in_flight: u32, successes: u32) -> Word {
        let payload = ((successes & HALF_OPEN_FIELD_MAX) << 16) | (in_flight & HALF_OPEN_FIELD_MAX);
        Word::pack(TAG_HALF_OPEN, generation, payload)
    }

    pub(super) const fn state(self) -> BreakerState {
        match self.0 >> TAG_SHIFT {
            TAG_CLOSED => BreakerState::Closed,
            TAG_OPEN => BreakerState::Open,
            // Tag 3 is never written.
            _ => BreakerState::HalfOpen,
        }
    }

    pub(super) const fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32 & GEN_MASK
    }

    pub(super) const fn next_generation(self) -> u32 {
        self.generation().wrapping_add(1) & GEN_MASK
    }

    const fn payload(self) -> u32 {
        self.0 as u32
    }

    /// Failures counted in the current closed period; 0 in other states.
    pub(super) const fn failures(self) -> u32 {
        match self.state() {
            BreakerState::Closed => self.payload(),
            _ => 0,
        }
    }

    /// Half-open trial calls currently running; 0 in other states.
    pub(super) const fn in_flight(self) -> u32 {
        match self.state() {
            BreakerState::HalfOpen => self.payload() & HALF_OPEN_FIELD_MAX,
            _ => 0,
        }
    }

    /// Successful half-open trials so far; 0 in other states.
    pub(super) const fn trial_successes(self) -> u32 {
        match self.state() {
            BreakerState::HalfOpen => self.payload() >> 16,
            _ => 0,
        }
    }

    /// Same state and generation: nothing has happened to the breaker in between that a
    /// permit issued under `self` should not see.
    pub(super) const fn same_epoch(self, other: Word) -> bool {
        self.0 >> GEN_SHIFT == other.0 >> GEN_SHIFT
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("generation", &self.generation())
            .field("failures", &self.failures())
            .field("in_flight", &self.in_flight())
            .field("trial_successes", &self.trial_successes())
            .finish()
    }
}
