//! What the ledger's rows are (SPEC §3, §8): the only record of credits moving.

crate::text_enum! {
    /// Why a ledger row moved credits (its `kind` column).
    pub enum LedgerKind {
        /// The order's credits, once, when its payment succeeded.
        Grant => "grant",
        /// Taken back for a refund (negative), or given back when a refund failed (positive).
        Refund => "refund",
        /// Taken back when a dispute was lost.
        Dispute => "dispute",
        /// Spent through the credits API.
        Spend => "spend",
        /// A spend given back.
        SpendReversal => "spend_reversal",
    }
}
