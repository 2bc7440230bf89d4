#!/usr/bin/env bash
# Throwaway TLS material for development and tests: a CA of its own and, signed by it,
# one server and one client certificate. Never for production; never commit the output.
#
#   deploy/tls/make-certs.sh OUTDIR     (e.g. .cache/tls: git ignores .cache/)
#
# Writes into OUTDIR (PEM, keys unencrypted PKCS#8, mode 600):
#   ca.pem, ca-key.pem          the CA (CN=kstate-test-ca)
#   server.pem, server-key.pem  CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1;
#                               serverAuth+clientAuth: for the Kafka broker and for a
#                               kstate node's own HTTPS
#   client.pem, client-key.pem  CN=kstate-client, clientAuth (TLS client authentication)
#   server-keystore.pem         server key + server certificate + CA: what a Kafka broker
#                               takes as ssl.keystore.type=PEM / ssl.keystore.location
#                               (ssl.truststore.type=PEM, ssl.truststore.location=ca.pem)
#   client-keystore.pem         the same for a Java client with a client certificate
#
# Idempotent: an OUTDIR that already holds every file, with certificates that chain to
# its ca.pem and stay valid for at least another hour, is reused as it is (exit 0, no
# change). Otherwise everything is made anew (a new CA too) in a temporary folder and
# moved in place, so an interrupted run never leaves a half-made OUTDIR that looks done.
#
# Environment:
#   CERT_DAYS  validity in days of every certificate (default 7)
set -euo pipefail

out=${1:?usage: make-certs.sh OUTDIR}
days=${CERT_DAYS:-7}
files=(ca.pem ca-key.pem server.pem server-key.pem client.pem client-key.pem
       server-keystore.pem client-keystore.pem)

die() { echo "make-certs.sh: $*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl is needed"

complete() {  # complete DIR: every file there, both certificates valid and from its CA
    local dir=$1 f
    for f in "${files[@]}"; do [ -s "$dir/$f" ] || return 1; done
    for f in ca.pem server.pem client.pem; do
        openssl x509 -in "$dir/$f" -noout -checkend 3600 >/dev/null 2>&1 || return 1
    done
    openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" "$dir/client.pem" \
        >/dev/null 2>&1 || return 1
}

if complete "$out"; then
    echo "make-certs.sh: reusing $out" >&2
    exit 0
fi

mkdir -p "$out"
tmp=$(mktemp -d "$out/.make-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
umask 077

ssl() { openssl "$@" >>"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; die "openssl $1 failed"; }; }
key() { ssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# sign NAME SUBJECT EXTENSIONS: NAME-key.pem + NAME.pem, signed by the CA
sign() {
    local name=$1 subject=$2 ext=$3
    key "$tmp/$name-key.pem"
    printf '%s\n' "$ext" >"$tmp/$name.ext"
    ssl req -new -key "$tmp/$name-key.pem" -subj "$subject" -out "$tmp/$name.csr"
    ssl x509 -req -in "$tmp/$name.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$tmp/$name.ext" -out "$tmp/$name.pem"
}

key "$tmp/ca-key.pem"
ssl req -x509 -new -key "$tmp/ca-key.pem" -subj "/CN=kstate-test-ca" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$tmp/ca.pem"
sign server "/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
sign client "/CN=kstate-client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
# Kafka's PEM keystore: the private key first, then the certificate chain.
cat "$tmp/server-key.pem" "$tmp/server.pem" "$tmp/ca.pem" >"$tmp/server-keystore.pem"
cat "$tmp/client-key.pem" "$tmp/client.pem" "$tmp/ca.pem" >"$tmp/client-keystore.pem"

complete "$tmp" || die "the new certificates do not verify (see $tmp)"
for f in "${files[@]}"; do mv -f "$tmp/$f" "$out/$f"; done
chmod 644 "$out/ca.pem" "$out/server.pem" "$out/client.pem"
echo "make-certs.sh: new CA and certificates in $out (valid $days days)" >&2
