#!/usr/bin/env bash
# Generate all TLS test material for the integration rig into $1 (created if
# missing). Nothing here is ever committed: run.sh calls this for every run.
#
#   ca.pem / ca-key.pem              test root CA (RSA-2048), trusted by every client
#   intermediate.pem                 intermediate CA (issued by the root) used for
#                                    the RSA proxy leaf, so the full-chain PEM is
#                                    really exercised
#   legacy-rsa.pem / -key.pem        legacy backend leaf with a *1024-bit RSA* key
#   legacy-dh.pem / -key.pem         legacy backend leaf, RSA-2048 (its weakness is DH)
#   dh1024.pem                       1024-bit finite-field DH parameters
#   proxy-ecdsa-fullchain.pem/-key   proxy leaf ECDSA P-256, issued by the root
#   proxy-rsa-fullchain.pem/-key     proxy leaf RSA-2048, issued by the intermediate
set -euo pipefail

out=${1:?usage: gen-certs.sh OUTDIR}
proxy_name=${PROXY_HOSTNAME:-mx.tlsfront.test}
mkdir -p "$out"
cd "$out"

# openssl x509 -extfile wants a file; keep the extension sections in one place.
cat > ext.cnf <<EXT
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[leaf_rsa]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:\${ENV::LEAF_NAME}, DNS:localhost, IP:127.0.0.1, IP:::1

[leaf_ec]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:\${ENV::LEAF_NAME}, DNS:localhost, IP:127.0.0.1, IP:::1
EXT

# sign NAME ISSUER EXT_SECTION SAN_NAME : CSR NAME.csr -> NAME.pem
sign() {
    LEAF_NAME=$4 openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" \
        -CAcreateserial -days 30 -sha256 -extfile ext.cnf -extensions "$3" \
        -out "$1.pem" 2>/dev/null
    rm -f "$1.csr"
}

# Root CA (self-signed).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca-key.pem 2>/dev/null
LEAF_NAME=unused openssl req -x509 -new -key ca-key.pem -sha256 -days 30 \
    -subj "/O=tlsfront integration/CN=tlsfront Test Root CA" \
    -config ext.cnf -extensions ca -out ca.pem 2>/dev/null

# Intermediate CA, issued by the root.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out intermediate-key.pem 2>/dev/null
openssl req -new -key intermediate-key.pem -subj "/O=tlsfront integration/CN=tlsfront Test Intermediate CA" \
    -out intermediate.csr 2>/dev/null
sign intermediate ca ca unused

# Legacy backend with a 1024-bit RSA key (the weakness under test).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out legacy-rsa-key.pem 2>/dev/null
openssl req -new -key legacy-rsa-key.pem -subj "/CN=legacy-rsa.tlsfront.test" -out legacy-rsa.csr 2>/dev/null
sign legacy-rsa ca leaf_rsa legacy-rsa.tlsfront.test

# Legacy DHE backend: certificate is fine (RSA-2048); the DH group is the weakness.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out legacy-dh-key.pem 2>/dev/null
openssl req -new -key legacy-dh-key.pem -subj "/CN=legacy-dh.tlsfront.test" -out legacy-dh.csr 2>/dev/null
sign legacy-dh ca leaf_rsa legacy-dh.tlsfront.test
openssl dhparam -out dh1024.pem 1024 2>/dev/null

# Proxy leaf #1: ECDSA P-256 (SEC1 key converted to PKCS#8), issued directly by the root.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out proxy-ecdsa-key.pem 2>/dev/null
openssl req -new -key proxy-ecdsa-key.pem -subj "/CN=$proxy_name" -out proxy-ecdsa.csr 2>/dev/null
sign proxy-ecdsa ca leaf_ec "$proxy_name"
cp proxy-ecdsa.pem proxy-ecdsa-fullchain.pem

# Proxy leaf #2: RSA-2048, issued by the intermediate; full chain = leaf + intermediate.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out proxy-rsa-key.pem 2>/dev/null
openssl req -new -key proxy-rsa-key.pem -subj "/CN=$proxy_name" -out proxy-rsa.csr 2>/dev/null
sign proxy-rsa intermediate leaf_rsa "$proxy_name"
cat proxy-rsa.pem intermediate.pem > proxy-rsa-fullchain.pem

# Keys are read by root (Postfix reads them before dropping privileges; the
# proxy runs as root here), so keep them private.
chmod 600 ./*-key.pem

# Sanity: the chains verify with a permissive security level (the weak key is
# intentional) and the key sizes are what the scenarios assume.
openssl verify -auth_level 0 -CAfile ca.pem legacy-rsa.pem legacy-dh.pem proxy-ecdsa.pem >/dev/null
openssl verify -CAfile ca.pem -untrusted intermediate.pem proxy-rsa.pem >/dev/null
openssl x509 -in legacy-rsa.pem -noout -text | grep -q 'Public-Key: (1024 bit)'
openssl dhparam -in dh1024.pem -noout -text 2>/dev/null | grep -q '(1024 bit)'
echo "certs: generated in $out"
