//! The HSM through PKCS#11 (cryptoki): find the token by label, log in, list objects with the
//! attributes that matter for a ceremony, and generate key pairs that never leave the token.

use crate::config::{KeySection, KeyType};
use crate::der;
use anyhow::{Context, Result, anyhow, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::Path;

pub struct Hsm {
    ctx: Pkcs11,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hsm")
    }
}

impl Hsm {
    pub fn open(module: &Path) -> Result<Hsm> {
        let ctx = Pkcs11::new(module)
            .with_context(|| format!("cannot load the PKCS#11 module {}", module.display()))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .with_context(|| format!("{}: C_Initialize failed", module.display()))?;
        Ok(Hsm { ctx })
    }

    /// The one slot whose token has `label`.
    pub fn slot_for(&self, label: &str) -> Result<Slot> {
        let mut found = Vec::new();
        for slot in self.ctx.get_slots_with_token()? {
            if self.ctx.get_token_info(slot)?.label().trim_end() == label {
                found.push(slot);
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => bail!("no token labelled {label:?}"),
            _ => bail!("{} tokens are labelled {label:?}; exactly one must be", found.len()),
        }
    }

    /// A read-write session logged in as the user.
    pub fn login(&self, slot: Slot, pin: &str) -> Result<Session> {
        let session = self.ctx.open_rw_session(slot)?;
        match session.login(UserType::User, Some(&AuthPin::from(pin.to_string()))) {
            Ok(()) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                bail!("the PIN is wrong (the token counts failed logins)")
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => bail!("the token's PIN is locked"),
            Err(e) => Err(anyhow!(e).context("login failed")),
        }
    }

    /// Every token, with its objects (all objects when logged in, public ones otherwise).
    pub fn list(&self, pin: Option<&str>) -> Result<String> {
        let mut out = String::new();
        for slot in self.ctx.get_slots_with_token()? {
            let info = self.ctx.get_token_info(slot)?;
            out.push_str(&format!(
                "slot {}: token {:?} ({} {}, serial {})\n",
                slot.id(),
                info.label().trim_end(),
                info.manufacturer_id().trim_end(),
                info.model().trim_end(),
                info.serial_number().trim_end()
            ));
            let session = match pin {
                Some(pin) => self.login(slot, pin)?,
                None => self.ctx.open_ro_session(slot)?,
            };
            for object in session.find_objects(&[])? {
                out.push_str(&format!("  {}\n", describe_object(&session, object)?));
            }
        }
        Ok(out)
    }
}

fn describe_object(session: &Session, object: ObjectHandle) -> Result<String> {
    let wanted = [
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::ModulusBits,
        AttributeType::EcParams,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::NeverExtractable,
        AttributeType::AlwaysSensitive,
    ];
    let mut parts = Vec::new();
    for attribute in session.get_attributes(object, &wanted)? {
        parts.push(match attribute {
            Attribute::Label(l) => format!("label={:?}", String::from_utf8_lossy(&l)),
            Attribute::Id(id) => format!("id={}", hex::encode(id)),
            Attribute::Class(c) => format!("class={c}"),
            Attribute::KeyType(k) => format!("type={k}"),
            Attribute::ModulusBits(b) => format!("bits={b}"),
            Attribute::EcParams(p) => format!("curve={}", curve_name(&p)),
            Attribute::Sensitive(b) => format!("sensitive={b}"),
            Attribute::Extractable(b) => format!("extractable={b}"),
            Attribute::NeverExtractable(b) => format!("never_extractable={b}"),
            Attribute::AlwaysSensitive(b) => format!("always_sensitive={b}"),
            _ => continue,
        });
    }
    Ok(parts.join(" "))
}

fn curve_name(params: &[u8]) -> &'static str {
    if params == der::named_curve(der::OID_P256) {
        "P-256"
    } else if params == der::named_curve(der::OID_P384) {
        "P-384"
    } else {
        "other"
    }
}

/// Generate a key pair inside the token; refuse an existing label; read the public key back,
/// check it and the private key's protection; return the SubjectPublicKeyInfo (DER).
pub fn generate(session: &Session, key: &KeySection) -> Result<Vec<u8>> {
    let label = key.label.as_bytes().to_vec();
    let existing = session.find_objects(&[Attribute::Label(label.clone())])?;
    if !existing.is_empty() {
        bail!(
            "the token already has {} object(s) labelled {:?}; labels are never reused",
            existing.len(),
            key.label
        );
    }
    let id = hex::decode(&key.id).map_err(|_| anyhow!("key.id {:?} is not hex", key.id))?;
    let (mechanism, mut public) = match key.key_type {
        KeyType::Rsa3072 | KeyType::Rsa4096 => {
            let bits: u64 = if key.key_type == KeyType::Rsa3072 { 3072 } else { 4096 };
            (
                Mechanism::RsaPkcsKeyPairGen,
                vec![Attribute::ModulusBits(bits.into()), Attribute::PublicExponent(vec![0x01, 0x00, 0x01])],
            )
        }
        KeyType::EcP256 => {
            (Mechanism::EccKeyPairGen, vec![Attribute::EcParams(der::named_curve(der::OID_P256))])
        }
        KeyType::EcP384 => {
            (Mechanism::EccKeyPairGen, vec![Attribute::EcParams(der::named_curve(der::OID_P384))])
        }
    };
    public.extend([
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ]);
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::Label(label.clone()),
        Attribute::Id(id),
    ];
    let with_extractable = [private.clone(), vec![Attribute::Extractable(false)]].concat();
    let (public_handle, private_handle) = match session.generate_key_pair(
        &mechanism,
        &public,
        &with_extractable,
    ) {
        Ok(pair) => pair,
        // Some tokens refuse an explicit CKA_EXTRACTABLE; their keys must then not be extractable
        // by default, which is checked below.
        Err(CkError::Pkcs11(RvError::AttributeTypeInvalid | RvError::TemplateInconsistent, _)) => {
            eprintln!(
                "note: the token refuses CKA_EXTRACTABLE in the template; generating without it and checking"
            );
            private.retain(|a| !matches!(a, Attribute::Extractable(_)));
            session.generate_key_pair(&mechanism, &public, &private)?
        }
        Err(e) => return Err(anyhow!(e).context("key generation failed")),
    };
    for attribute in
        session.get_attributes(private_handle, &[AttributeType::Sensitive, AttributeType::Extractable])?
    {
        match attribute {
            Attribute::Sensitive(false) => bail!("the new private key is not CKA_SENSITIVE"),
            Attribute::Extractable(true) => bail!("the new private key is CKA_EXTRACTABLE"),
            _ => {}
        }
    }
    public_key_info(session, public_handle, key.key_type)
}

/// Read a public key back and check its size, exponent or curve.
pub fn public_key_info(session: &Session, handle: ObjectHandle, expected: KeyType) -> Result<Vec<u8>> {
    let attributes = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
            AttributeType::EcPoint,
        ],
    )?;
    let mut key_type = None;
    let (mut modulus, mut exponent, mut point) = (None, None, None);
    for a in attributes {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    match expected {
        KeyType::Rsa3072 | KeyType::Rsa4096 => {
            let (Some(CkKeyType::RSA), Some(n), Some(e)) = (key_type, modulus, exponent) else {
                bail!("the public key read back is not an RSA key");
            };
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            let want = if expected == KeyType::Rsa3072 { 3072 } else { 4096 };
            if bits != want {
                bail!("the public key read back has {bits} bits, {want} were asked for");
            }
            if e.iter().skip_while(|b| **b == 0).copied().collect::<Vec<_>>() != [1, 0, 1] {
                bail!("the public exponent read back is {}, not 65537", hex::encode(&e));
            }
            Ok(der::rsa_spki(&n, &e))
        }
        KeyType::EcP256 | KeyType::EcP384 => {
            let (Some(CkKeyType::EC), Some(p)) = (key_type, point) else {
                bail!("the public key read back is not an EC key");
            };
            let point = der::unwrap_ec_point(&p);
            let (oid, len) =
                if expected == KeyType::EcP256 { (der::OID_P256, 65) } else { (der::OID_P384, 97) };
            if point.len() != len || point[0] != 0x04 {
                bail!(
                    "the EC point read back has {} bytes, an uncompressed point on the curve has {len}",
                    point.len()
                );
            }
            Ok(der::ec_spki(oid, &point))
        }
    }
}
