//! The HSM through PKCS#11 (cryptoki): find the token by label (refusing a locked PIN, and a PIN
//! on its final try unless the operator says so), log in, list tokens and objects with the
//! attributes that matter for a ceremony, generate key pairs that never leave the token, and sign
//! with a key found by label and public key ([`HsmSigner`]).

use crate::x509::der;
use crate::x509::keys::{self, KeyKind};
use anyhow::{Context, Result, anyhow, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256, Sha384};
use std::path::Path;

pub struct Hsm {
    ctx: Pkcs11,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hsm")
    }
}

/// Where reviewed PKCS#11 modules are registered: the image build writes the packaged ones and
/// each `hsm_bundle` into the first (p11-kit's format: a `module:` line); packages register
/// theirs in the second.
const MODULE_REGISTRIES: &[&str] = &["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"];
/// Where p11-kit looks up a registered module named without a directory.
const P11_KIT_MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/pkcs11";

/// Modules that are never an HSM, whoever registered them: each sees every call, PINs included.
const REFUSED_MODULES: &[(&str, &str)] = &[
    ("pkcs11-spy.so", "OpenSC's PKCS#11 spy: it logs every call, PINs included"),
    ("p11-kit-client.so", "p11-kit's client: it forwards every call to a socket"),
    ("p11-kit-proxy.so", "p11-kit's proxy: it forwards to every registered module"),
    ("p11-kit-trust.so", "p11-kit's trust store, not an HSM"),
];

/// The module to load, if it is a reviewed one: registered in one of `registries` (the image's
/// packages and hsm_bundles), after resolving symbolic links, and none of [`REFUSED_MODULES`].
fn reviewed_module(module: &Path, registries: &[&Path], default_dir: &Path) -> Result<std::path::PathBuf> {
    let real = module.canonicalize().with_context(|| format!("PKCS#11 module {}", module.display()))?;
    for name in [module.file_name(), real.file_name()].into_iter().flatten() {
        if let Some((_, why)) =
            REFUSED_MODULES.iter().find(|(refused, _)| std::ffi::OsStr::new(refused) == name)
        {
            bail!("refused PKCS#11 module {}: it is {why}", module.display());
        }
    }
    let mut registered = Vec::new();
    for dir in registries {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "module") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            for line in text.lines() {
                if let Some(value) = line.trim().strip_prefix("module:") {
                    let named = Path::new(value.trim());
                    let named =
                        if named.is_absolute() { named.to_path_buf() } else { default_dir.join(named) };
                    if let Ok(target) = named.canonicalize() {
                        registered.push(target);
                    }
                }
            }
        }
    }
    if !registered.contains(&real) {
        let dirs: Vec<String> = registries.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "refused PKCS#11 module {}: it is registered in none of {} (only the image's reviewed modules, its packages' and its hsm_bundles', may be loaded)",
            module.display(),
            dirs.join(", ")
        );
    }
    Ok(real)
}

impl Hsm {
    /// Load a reviewed PKCS#11 module (see [`reviewed_module`]) and initialize it.
    pub fn open(module: &Path) -> Result<Hsm> {
        let registries: Vec<&Path> = MODULE_REGISTRIES.iter().map(Path::new).collect();
        let module = &reviewed_module(module, &registries, Path::new(P11_KIT_MODULE_DIR))?;
        let ctx = Pkcs11::new(module)
            .with_context(|| format!("cannot load the PKCS#11 module {}", module.display()))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .with_context(|| format!("{}: C_Initialize failed", module.display()))?;
        Ok(Hsm { ctx })
    }

    /// The one slot whose initialized token has `label`, after checking its user PIN's state.
    pub fn slot_for(
        &self,
        label: &str,
        allow_final_pin_try: bool,
        console: &dyn crate::console::Console,
    ) -> Result<Slot> {
        let mut found = Vec::new();
        for slot in self.ctx.get_slots_with_token()? {
            let info = self.ctx.get_token_info(slot)?;
            if info.token_initialized() && info.label().trim_end() == label {
                found.push((slot, info));
            }
        }
        let (slot, info) = match found.as_slice() {
            [one] => one,
            [] => bail!("no initialized token is labelled {label:?}"),
            _ => bail!("{} tokens are labelled {label:?}; exactly one must be", found.len()),
        };
        if info.user_pin_locked() {
            bail!("token {label:?}: the user PIN is locked; nothing was tried");
        }
        if info.user_pin_final_try() && !allow_final_pin_try {
            bail!(
                "token {label:?}: the next wrong PIN locks it (final try); nothing was tried. Check the PIN, then pass --allow-final-pin-try"
            );
        }
        if info.user_pin_count_low() {
            console
                .say(&format!("warning: token {label:?} has counted failed PIN entries; few tries are left"));
        }
        Ok(*slot)
    }

    /// Initialize a token labelled `label` in a free slot, with `pin` as its user PIN and a random
    /// SO PIN nobody keeps: for a rehearsal's throwaway SoftHSM only (`plan run --dry-run`).
    pub fn init_rehearsal_token(&self, label: &str, pin: &str) -> Result<()> {
        let mut free = None;
        for slot in self.ctx.get_slots_with_token()? {
            if !self.ctx.get_token_info(slot)?.token_initialized() {
                free = Some(slot);
                break;
            }
        }
        let slot = free.context("the rehearsal HSM has no free slot")?;
        let mut so = [0u8; 16];
        getrandom::getrandom(&mut so).context("the system's random number generator failed")?;
        let so_pin = AuthPin::from(hex::encode(so));
        self.ctx.init_token(slot, &so_pin, label).with_context(|| format!("initializing token {label:?}"))?;
        let session = self.ctx.open_rw_session(slot)?;
        session.login(UserType::So, Some(&so_pin))?;
        session.init_pin(&AuthPin::from(pin.to_string()))?;
        session.logout()?;
        Ok(())
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

    /// Every slot with a token, and the objects of each initialized token: public ones, and all
    /// of them for the token `login` names (a PIN is tried on that token only).
    pub fn list(&self, login: Option<(&str, &str)>, console: &dyn crate::console::Console) -> Result<String> {
        let mut out = String::new();
        let mut logged_in = false;
        for slot in self.ctx.get_slots_with_token()? {
            let info = self.ctx.get_token_info(slot)?;
            if !info.token_initialized() {
                out.push_str(&format!("slot {}: uninitialized token (a free slot)\n", slot.id()));
                continue;
            }
            let label = info.label().trim_end().to_string();
            out.push_str(&format!(
                "slot {}: token {label:?} ({} {}, serial {}){}{}\n",
                slot.id(),
                info.manufacturer_id().trim_end(),
                info.model().trim_end(),
                info.serial_number().trim_end(),
                if info.user_pin_count_low() { ", PIN count low" } else { "" },
                if info.user_pin_locked() { ", PIN locked" } else { "" },
            ));
            let session = match login {
                Some((wanted, pin)) if wanted == label => {
                    logged_in = true;
                    self.login(self.slot_for(&label, false, console)?, pin)?
                }
                _ => self.ctx.open_ro_session(slot)?,
            };
            for object in session.find_objects(&[])? {
                out.push_str(&format!("  {}\n", describe_object(&session, object)?));
            }
        }
        if let Some((wanted, _)) = login
            && !logged_in
        {
            bail!("no initialized token is labelled {wanted:?}");
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
        AttributeType::Decrypt,
        AttributeType::Unwrap,
        AttributeType::Modifiable,
        AttributeType::Copyable,
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
            Attribute::Decrypt(b) => format!("decrypt={b}"),
            Attribute::Unwrap(b) => format!("unwrap={b}"),
            Attribute::Modifiable(b) => format!("modifiable={b}"),
            Attribute::Copyable(b) => format!("copyable={b}"),
            _ => continue,
        });
    }
    Ok(parts.join(" "))
}

fn curve_name(params: &[u8]) -> &'static str {
    if params == der::named_curve(der::P256) {
        "P-256"
    } else if params == der::named_curve(der::P384) {
        "P-384"
    } else {
        "other"
    }
}

/// The private key's protection: asked for in the template and checked after generation.
const PROTECTION: &[(AttributeType, bool, &str)] = &[
    (AttributeType::Sensitive, true, "CKA_SENSITIVE"),
    (AttributeType::Extractable, false, "CKA_EXTRACTABLE"),
    (AttributeType::Decrypt, false, "CKA_DECRYPT"),
    (AttributeType::Unwrap, false, "CKA_UNWRAP"),
    (AttributeType::Derive, false, "CKA_DERIVE"),
    (AttributeType::Modifiable, false, "CKA_MODIFIABLE"),
    (AttributeType::Copyable, false, "CKA_COPYABLE"),
];

fn protection_attribute(kind: AttributeType, value: bool) -> Attribute {
    match kind {
        AttributeType::Sensitive => Attribute::Sensitive(value),
        AttributeType::Extractable => Attribute::Extractable(value),
        AttributeType::Decrypt => Attribute::Decrypt(value),
        AttributeType::Unwrap => Attribute::Unwrap(value),
        AttributeType::Derive => Attribute::Derive(value),
        AttributeType::Modifiable => Attribute::Modifiable(value),
        _ => Attribute::Copyable(value),
    }
}

fn attribute_bool(attribute: &Attribute) -> Option<(AttributeType, bool)> {
    Some(match attribute {
        Attribute::Sensitive(b) => (AttributeType::Sensitive, *b),
        Attribute::Extractable(b) => (AttributeType::Extractable, *b),
        Attribute::Decrypt(b) => (AttributeType::Decrypt, *b),
        Attribute::Unwrap(b) => (AttributeType::Unwrap, *b),
        Attribute::Derive(b) => (AttributeType::Derive, *b),
        Attribute::Modifiable(b) => (AttributeType::Modifiable, *b),
        Attribute::Copyable(b) => (AttributeType::Copyable, *b),
        _ => return None,
    })
}

/// Refuse a label or CKA_ID any object of the token already has.
pub fn check_unused(session: &Session, label: &str, id: &[u8]) -> Result<()> {
    let by_label = session.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])?;
    if !by_label.is_empty() {
        bail!(
            "the token already has {} object(s) labelled {label:?}; labels are never reused",
            by_label.len()
        );
    }
    let by_id = session.find_objects(&[Attribute::Id(id.to_vec())])?;
    if !by_id.is_empty() {
        bail!(
            "the token already has {} object(s) with CKA_ID {}; ids are never reused",
            by_id.len(),
            hex::encode(id)
        );
    }
    Ok(())
}

/// Generate a key pair inside the token: the private key sensitive, never extractable, for
/// signing only and not modifiable or copyable; read the public key back and check it; return
/// its SubjectPublicKeyInfo (DER). A token that refuses one of the protection attributes in the
/// template is asked again without the optional ones, and the result checked attribute by
/// attribute: sensitive and not extractable are required, the others reported.
pub fn generate(
    session: &Session,
    label: &str,
    id: &[u8],
    key: KeyKind,
    console: &dyn crate::console::Console,
) -> Result<Vec<u8>> {
    check_unused(session, label, id)?;
    let (mechanism, mut public) = match key {
        KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => {
            let bits: u64 = match key {
                KeyKind::Rsa2048 => 2048,
                KeyKind::Rsa3072 => 3072,
                _ => 4096,
            };
            (
                Mechanism::RsaPkcsKeyPairGen,
                vec![Attribute::ModulusBits(bits.into()), Attribute::PublicExponent(vec![0x01, 0x00, 0x01])],
            )
        }
        KeyKind::EcP256 => (Mechanism::EccKeyPairGen, vec![Attribute::EcParams(der::named_curve(der::P256))]),
        KeyKind::EcP384 => (Mechanism::EccKeyPairGen, vec![Attribute::EcParams(der::named_curve(der::P384))]),
    };
    public.extend([
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]);
    let base = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ];
    let full: Vec<Attribute> = base
        .iter()
        .cloned()
        .chain(PROTECTION.iter().map(|(kind, value, _)| protection_attribute(*kind, *value)))
        .collect();
    let (public_handle, private_handle) = match session.generate_key_pair(&mechanism, &public, &full) {
        Ok(pair) => pair,
        Err(CkError::Pkcs11(
            RvError::AttributeTypeInvalid | RvError::TemplateInconsistent | RvError::AttributeValueInvalid,
            _,
        )) => {
            console.say(
                "note: the token refuses part of the protection template; generating with CKA_SENSITIVE only and checking",
            );
            let minimal = [base, vec![Attribute::Sensitive(true)]].concat();
            session.generate_key_pair(&mechanism, &public, &minimal)?
        }
        Err(e) => return Err(anyhow!(e).context("key generation failed")),
    };
    let wanted: Vec<AttributeType> = PROTECTION.iter().map(|(kind, _, _)| *kind).collect();
    let actual = session.get_attributes(private_handle, &wanted)?;
    for (kind, expected, name) in PROTECTION {
        let value = actual.iter().filter_map(attribute_bool).find(|(k, _)| k == kind).map(|(_, v)| v);
        match (kind, value) {
            (AttributeType::Sensitive | AttributeType::Extractable, Some(v)) if v != *expected => {
                bail!("the new private key has {name} = {v}; the ceremony requires {expected}")
            }
            (_, Some(v)) if v != *expected => console.say(&format!(
                "warning: the new private key has {name} = {v} (the token ignored the template)"
            )),
            (_, None) => {
                console.say(&format!("note: the token does not report {name} for the new private key"))
            }
            _ => {}
        }
    }
    let spki = public_key_info(session, public_handle)?;
    let kind = keys::kind(&spki)?;
    if kind != key {
        bail!("the public key read back is {}, {} was asked for", kind.name(), key.name());
    }
    Ok(spki)
}

/// Read a public key object back as a SubjectPublicKeyInfo (DER).
pub fn public_key_info(session: &Session, handle: ObjectHandle) -> Result<Vec<u8>> {
    let attributes = session.get_attributes(
        handle,
        &[
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
            AttributeType::EcPoint,
            AttributeType::EcParams,
        ],
    )?;
    let mut key_type = None;
    let (mut modulus, mut exponent, mut point, mut params) = (None, None, None, None);
    for a in attributes {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::Modulus(m) => modulus = Some(m),
            Attribute::PublicExponent(e) => exponent = Some(e),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::EcParams(p) => params = Some(p),
            _ => {}
        }
    }
    match (key_type, modulus, exponent, point, params) {
        (Some(CkKeyType::RSA), Some(n), Some(e), _, _) => Ok(der::rsa_spki(&n, &e)),
        (Some(CkKeyType::EC), _, _, Some(p), Some(params)) => {
            let curve = if params == der::named_curve(der::P256) {
                der::P256
            } else if params == der::named_curve(der::P384) {
                der::P384
            } else {
                bail!("an EC key on a curve other than P-256 or P-384");
            };
            Ok(der::ec_spki(curve, &der::unwrap_ec_point(&p)))
        }
        _ => bail!("the public key object is neither an RSA nor an EC key"),
    }
}

/// A private key in the token, with its public half read back.
pub struct HsmSigner<'a> {
    session: &'a Session,
    private: ObjectHandle,
    kind: KeyKind,
    spki: Vec<u8>,
}

impl std::fmt::Debug for HsmSigner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HsmSigner({})", self.kind.name())
    }
}

impl<'a> HsmSigner<'a> {
    /// The signing key by label: exactly one private key, and its public key (same label). With
    /// `expected_spki`, the public key must also be that one (the issuer certificate's).
    pub fn find(session: &'a Session, label: &str, expected_spki: Option<&[u8]>) -> Result<HsmSigner<'a>> {
        let by = |class: ObjectClass| {
            session.find_objects(&[Attribute::Class(class), Attribute::Label(label.as_bytes().to_vec())])
        };
        let privates = by(ObjectClass::PRIVATE_KEY)?;
        let [private] = privates.as_slice() else {
            bail!("{} private keys are labelled {label:?}; exactly one must be", privates.len());
        };
        let publics = by(ObjectClass::PUBLIC_KEY)?;
        let [public] = publics.as_slice() else {
            bail!("{} public keys are labelled {label:?}; exactly one must be", publics.len());
        };
        let spki = public_key_info(session, *public)?;
        if let Some(expected) = expected_spki
            && expected != spki.as_slice()
        {
            bail!("the key labelled {label:?} does not match the issuer certificate's public key");
        }
        let kind = keys::kind(&spki)?;
        Ok(HsmSigner { session, private: *private, kind, spki })
    }

    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// 20 random bytes from the token's RNG, positive and not starting with zero: a serial.
    pub fn random_serial(&self) -> Result<Vec<u8>> {
        let mut serial =
            self.session.generate_random_vec(20).context("the HSM's random number generator failed")?;
        serial[0] &= 0x7f;
        if serial[0] == 0 {
            serial[0] = 0x01;
        }
        Ok(serial)
    }
}

impl crate::x509::Signer for HsmSigner<'_> {
    fn algorithm(&self) -> &'static [u64] {
        self.kind.signature_algorithm()
    }

    fn public_key_info(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let signed = match self.kind {
            KeyKind::EcP256 => self.session.sign(&Mechanism::Ecdsa, self.private, &Sha256::digest(message)),
            KeyKind::EcP384 => self.session.sign(&Mechanism::Ecdsa, self.private, &Sha384::digest(message)),
            _ => self.session.sign(&Mechanism::Sha256RsaPkcs, self.private, message),
        };
        let raw = signed.context("the HSM refused to sign")?;
        // PKCS#11 returns ECDSA signatures as r || s; X.509 wants an ECDSA-Sig-Value.
        Ok(if self.kind.is_rsa() { raw } else { der::ecdsa_signature(&raw) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_modules_load_and_never_a_spy() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, libs) = (dir.path().join("modules"), dir.path().join("lib"));
        std::fs::create_dir_all(&registry).unwrap();
        std::fs::create_dir_all(&libs).unwrap();
        for name in ["libvendor.so", "libother.so", "pkcs11-spy.so"] {
            std::fs::write(libs.join(name), b"\x7fELF").unwrap();
        }
        std::os::unix::fs::symlink(libs.join("pkcs11-spy.so"), libs.join("innocent.so")).unwrap();
        std::fs::write(
            registry.join("vendor.module"),
            format!("module: {}\n", libs.join("libvendor.so").display()),
        )
        .unwrap();
        std::fs::write(registry.join("spy.module"), "module: pkcs11-spy.so\n").unwrap();
        std::fs::write(
            registry.join("notes.txt"),
            format!("module: {}\n", libs.join("libother.so").display()),
        )
        .unwrap();
        let check = |name: &str| reviewed_module(&libs.join(name), &[registry.as_path()], &libs);

        assert_eq!(check("libvendor.so").unwrap(), libs.join("libvendor.so").canonicalize().unwrap());
        let err = check("libother.so").unwrap_err().to_string();
        assert!(err.contains("libother.so: it is registered in none of"), "{err}");
        // Registered or not, under its own name or another, the spy is refused and named.
        for name in ["pkcs11-spy.so", "innocent.so"] {
            let err = check(name).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("logs every call, PINs included"), "{err}");
        }
        assert!(check("missing.so").unwrap_err().to_string().contains("missing.so"));
    }
}
