//! What must hold before a usage file can be created.

use crate::{
    Account, Catalogue, Contract, ContractKind, ContractStatus, ItemType, Listing, ListingStatus, Marketplace,
    PrerequisiteError, Product,
};

/// The objects a new usage file is bound to, once its prerequisites hold.
#[derive(Debug, Clone, Copy)]
pub struct FileScope<'a> {
    /// The product.
    pub product: &'a Product,
    /// The distribution contract.
    pub contract: &'a Contract,
    /// The contract's marketplace.
    pub marketplace: Option<&'a Marketplace>,
    /// The vendor.
    pub vendor: Option<&'a Account>,
    /// The provider (distributor).
    pub provider: Option<&'a Account>,
    /// The listing.
    pub listing: &'a Listing,
}

fn status_name(status: ContractStatus) -> String {
    format!("{status:?}").to_ascii_lowercase()
}

impl Catalogue {
    /// Checks the prerequisites for creating a usage file of `product` under `contract`:
    /// a usage capability is on, reportable items exist, the distribution contract (and its
    /// program contract) are active and belong to the product's vendor, and the product is
    /// listed under the contract. Each failure is its own error.
    pub fn check_file_prerequisites<'a>(
        &'a self,
        product: &str,
        contract: &str,
    ) -> Result<FileScope<'a>, PrerequisiteError> {
        let product = self.product(product).ok_or_else(|| PrerequisiteError::UnknownProduct(product.to_owned()))?;
        let caps = &product.capabilities;
        if !caps.usage_enabled() {
            return Err(PrerequisiteError::UsageDisabled(product.id.clone()));
        }
        let reportable = product.items.iter().any(|item| match item.item_type {
            ItemType::Ppu => caps.ppu.is_some(),
            ItemType::Reservation => caps.reservation_consumption(),
        });
        if !reportable && !caps.dynamic_items() {
            return Err(PrerequisiteError::NoItems(product.id.clone()));
        }
        let contract =
            self.contract(contract).ok_or_else(|| PrerequisiteError::UnknownContract(contract.to_owned()))?;
        if contract.kind != ContractKind::Distribution {
            return Err(PrerequisiteError::NotDistribution(contract.id.clone()));
        }
        if contract.status != ContractStatus::Active {
            return Err(PrerequisiteError::ContractNotActive {
                contract: contract.id.clone(),
                status: status_name(contract.status),
            });
        }
        if contract.vendor != product.vendor {
            return Err(PrerequisiteError::OtherVendor {
                contract: contract.id.clone(),
                contract_vendor: contract.vendor.clone(),
                product: product.id.clone(),
                product_vendor: product.vendor.clone(),
            });
        }
        if let Some(program_id) = &contract.program {
            let status = self.contract(program_id).map(|p| p.status);
            if status != Some(ContractStatus::Active) {
                return Err(PrerequisiteError::ProgramNotActive {
                    contract: contract.id.clone(),
                    program: program_id.clone(),
                    status: status.map_or_else(|| "missing".to_owned(), status_name),
                });
            }
        }
        let listing = self.listing(&product.id, &contract.id).ok_or_else(|| PrerequisiteError::NoListing {
            product: product.id.clone(),
            contract: contract.id.clone(),
        })?;
        if listing.status != ListingStatus::Listed {
            return Err(PrerequisiteError::ListingNotActive {
                listing: listing.id.clone(),
                product: product.id.clone(),
            });
        }
        Ok(FileScope {
            product,
            contract,
            marketplace: contract.marketplace.as_deref().and_then(|m| self.marketplace(m)),
            vendor: self.account(&product.vendor),
            provider: self.account(&contract.provider),
            listing,
        })
    }
}
