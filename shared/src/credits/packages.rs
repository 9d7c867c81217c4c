//! Credit packages: what the operator sells (credits for a price in JPY or USD, with a discount and a
//! validity window); tenants see the ones on sale now.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{IdGenerator, PackageId};
use crate::store::{Condition, Index, Item, ItemStore, Query, StoreError, keys};

use super::{CreditError, Credits};

/// The currencies packages are priced in (Stripe's lowercase codes on the wire to Stripe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    Jpy,
    Usd,
}

impl Currency {
    /// Stripe's code.
    pub fn stripe_code(self) -> &'static str {
        match self {
            Currency::Jpy => "jpy",
            Currency::Usd => "usd",
        }
    }
}

/// A package as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Package {
    pub package_id: PackageId,
    pub display_name: String,
    pub credits: Credits,
    /// The list price in the currency's smallest unit (yen; US cents), as Stripe counts amounts.
    pub price: i64,
    pub currency: Currency,
    /// 0 to 100.
    pub discount_percent: u8,
    /// What a purchase charges: the price less the discount, rounded down to the unit (in the buyer's
    /// favour).
    pub amount: i64,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl Package {
    /// On sale at `now`: active and inside its window.
    pub fn on_sale(&self, now: OffsetDateTime) -> bool {
        self.active
            && self.valid_from.is_none_or(|from| from <= now)
            && self.valid_until.is_none_or(|until| now < until)
    }
}

/// A package as the operator describes it; [`NewPackage::parse`] checks every field.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewPackage {
    pub display_name: String,
    pub credits: i64,
    pub price: i64,
    pub currency: Currency,
    #[serde(default)]
    pub discount_percent: u8,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    #[serde(default = "active_by_default")]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

/// Why a package description was refused: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PackageInvalid {
    pub field: &'static str,
    pub message: String,
}

/// The most credits one package may hold, and the highest price (both far beyond any real package,
/// low enough that no arithmetic on them can overflow).
const MAX_CREDITS: i64 = 100_000_000;
const MAX_PRICE: i64 = 100_000_000_000;

impl NewPackage {
    /// Checks the description and builds the package.
    pub fn parse(
        self,
        ids: &dyn IdGenerator,
        now: OffsetDateTime,
    ) -> Result<Package, PackageInvalid> {
        let bad = |field, message: &str| PackageInvalid {
            field,
            message: message.to_string(),
        };
        let display_name = self.display_name.trim().to_string();
        if display_name.is_empty() || display_name.chars().count() > 100 {
            return Err(bad("display_name", "1 to 100 characters"));
        }
        if !(1..=MAX_CREDITS).contains(&self.credits) {
            return Err(bad("credits", "a whole number from 1 to 100,000,000"));
        }
        if !(1..=MAX_PRICE).contains(&self.price) {
            return Err(bad(
                "price",
                "a positive whole number in the currency's smallest unit (yen, cents)",
            ));
        }
        if self.discount_percent > 100 {
            return Err(bad("discount_percent", "0 to 100"));
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until)
            && until <= from
        {
            return Err(bad("valid_until", "must be after valid_from"));
        }
        let amount = self.price * i64::from(100 - self.discount_percent) / 100;
        // Stripe refuses charges under its minimum (¥50, $0.50): such a package could never be bought.
        let minimum = match self.currency {
            Currency::Jpy => 50,
            Currency::Usd => 50,
        };
        if amount < minimum {
            return Err(bad(
                "price",
                "after the discount, at least Stripe's minimum charge (¥50 or $0.50)",
            ));
        }
        Ok(Package {
            package_id: PackageId::generate(ids),
            display_name,
            credits: Credits(self.credits),
            price: self.price,
            currency: self.currency,
            discount_percent: self.discount_percent,
            amount,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            active: self.active,
            created_at: now,
        })
    }
}

/// Saves a new package in the catalogue.
pub async fn create(store: &dyn ItemStore, package: &Package) -> Result<(), CreditError> {
    let (pk, sk) = keys::credit_package_listing(&package.package_id);
    let item = Item::from_record(keys::credit_package(&package.package_id), package)?.with_index(
        Index::ByTenant,
        pk,
        sk,
    );
    store.put(item, Condition::IfAbsent).await?;
    Ok(())
}

/// One package, on sale or not.
pub async fn get(
    store: &dyn ItemStore,
    package: &PackageId,
) -> Result<Option<Package>, StoreError> {
    store
        .get(&keys::credit_package(package))
        .await?
        .map(|item| item.to_record())
        .transpose()
}

/// Every package in the catalogue, on sale or not, newest first (the operator's list).
pub async fn all(store: &dyn ItemStore) -> Result<Vec<Package>, StoreError> {
    let mut packages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(Index::ByTenant, keys::CREDIT_PACKAGES)
                    .limit(1000)
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            packages.push(item.to_record::<Package>()?);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    packages.sort_by(|a, b| {
        (b.created_at, b.package_id.as_str()).cmp(&(a.created_at, a.package_id.as_str()))
    });
    Ok(packages)
}

/// The packages on sale at `now`, smallest first.
pub async fn on_sale(
    store: &dyn ItemStore,
    now: OffsetDateTime,
) -> Result<Vec<Package>, StoreError> {
    let mut packages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query(
                Query::on(Index::ByTenant, keys::CREDIT_PACKAGES)
                    .limit(1000)
                    .after(cursor),
            )
            .await?;
        for item in &page.items {
            let package: Package = item.to_record()?;
            if package.on_sale(now) {
                packages.push(package);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    packages.sort_by(|a, b| {
        (a.credits, a.package_id.as_str()).cmp(&(b.credits, b.package_id.as_str()))
    });
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SequentialIds;
    use time::macros::datetime;

    fn new(price: i64, discount: u8) -> NewPackage {
        NewPackage {
            display_name: "Starter pack".into(),
            credits: 1_000,
            price,
            currency: Currency::Jpy,
            discount_percent: discount,
            valid_from: None,
            valid_until: None,
            active: true,
        }
    }

    #[test]
    fn discounts_round_in_the_buyers_favour_and_bad_fields_are_named() {
        let now = datetime!(2026-05-01 00:00 UTC);
        let ids = SequentialIds::default();
        assert_eq!(new(1_000, 15).parse(&ids, now).unwrap().amount, 850);
        assert_eq!(new(999, 15).parse(&ids, now).unwrap().amount, 849);
        assert_eq!(new(100, 60).parse(&ids, now).unwrap_err().field, "price");
        assert_eq!(
            new(1_000, 101).parse(&ids, now).unwrap_err().field,
            "discount_percent"
        );
        let mut backwards = new(1_000, 0);
        backwards.valid_from = Some(now);
        backwards.valid_until = Some(now);
        assert_eq!(backwards.parse(&ids, now).unwrap_err().field, "valid_until");
        let mut windowed = new(1_000, 0).parse(&ids, now).unwrap();
        windowed.valid_from = Some(now);
        windowed.valid_until = Some(datetime!(2026-06-01 00:00 UTC));
        assert!(!windowed.on_sale(datetime!(2026-04-30 23:59 UTC)));
        assert!(windowed.on_sale(now));
        assert!(!windowed.on_sale(datetime!(2026-06-01 00:00 UTC)));
    }
}
