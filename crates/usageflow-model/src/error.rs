//! Errors of the domain model. Each says what is wrong and, where it helps, what to do.

use crate::AccountRole;

/// The catalogue data is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// Two objects of one kind share an id.
    #[error("duplicate {kind} `{id}` in the catalogue")]
    Duplicate { kind: &'static str, id: String },
    /// An object names another that does not exist.
    #[error("{from} refers to unknown {kind} `{id}`")]
    MissingReference { kind: &'static str, id: String, from: String },
    /// An object names an account of the wrong role.
    #[error("{from} refers to account `{id}` as a {expected:?}, but it is a {found:?}")]
    WrongRole { id: String, expected: AccountRole, found: AccountRole, from: String },
    /// Any other rule.
    #[error("{object} {reason}")]
    Invalid { object: String, reason: String },
}

/// A usage file cannot be created for this product and contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrerequisiteError {
    /// No such product.
    #[error("unknown product `{0}`")]
    UnknownProduct(String),
    /// Neither pay-as-you-go nor reservation consumption is on.
    #[error(
        "product {0} has no usage capability: enable pay-as-you-go (with a reporting schema) or \
         consumption reporting for reservation items first"
    )]
    UsageDisabled(String),
    /// No item can be reported.
    #[error(
        "product {0} defines no items that can be reported: add pay-as-you-go items (or enable dynamic \
         items), or reservation items with consumption reporting"
    )]
    NoItems(String),
    /// No such contract.
    #[error("unknown contract `{0}`")]
    UnknownContract(String),
    /// The contract is not a distribution contract.
    #[error("contract {0} is not a distribution contract")]
    NotDistribution(String),
    /// The contract is not active.
    #[error("distribution contract {contract} is {status}, not active")]
    ContractNotActive { contract: String, status: String },
    /// The contract belongs to another vendor.
    #[error(
        "distribution contract {contract} belongs to vendor {contract_vendor}, not to {product}'s vendor {product_vendor}"
    )]
    OtherVendor { contract: String, contract_vendor: String, product: String, product_vendor: String },
    /// The program contract is missing or not active.
    #[error("program contract {program} of distribution contract {contract} is {status}, not active")]
    ProgramNotActive { contract: String, program: String, status: String },
    /// The product is not listed under the contract.
    #[error("product {product} has no listing under contract {contract}: list it in the marketplace first")]
    NoListing { product: String, contract: String },
    /// The listing exists but is not active.
    #[error("listing {listing} of product {product} is unlisted; reporting needs an active listing")]
    ListingNotActive { listing: String, product: String },
}
