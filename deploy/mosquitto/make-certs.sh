#!/bin/sh
# A local certificate authority for one site and the broker's TLS certificate signed by it.
#   ./make-certs.sh SITE_ID [NAME ...]      e.g.  ./make-certs.sh hq mqtt.hq.example.internal 10.20.0.5
# Writes into ${CERTS_DIR:-<this folder>/certs} (mounted into the broker and, for ca.crt, the
# service): ca.crt (give it to every client: wattkeeper's mqtts://...?ca=..., Zigbee2MQTT, Shelly),
# server.crt and server.key (the broker's); and the CA's key into ${CA_DIR:-<this folder>/ca}
# (mode 0600, never mounted, never committed: keep it offline once the certificates are made). The certificate names the compose service `mosquitto`, `localhost`,
# 127.0.0.1 and every NAME (a host name, or an IPv4 address). An existing CA is kept, so running
# the script again renews only the broker's certificate and clients keep trusting it.
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 SITE_ID [NAME ...]" >&2
  exit 2
fi
site="$1"
shift
case "$site" in
  *[!A-Za-z0-9_.-]*|"") echo "site id '$site': letters, digits, '_', '.', '-' only" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
dir="${CERTS_DIR:-$here/certs}"
ca_dir="${CA_DIR:-$here/ca}"
mkdir -p "$dir" "$ca_dir"
chmod 700 "$ca_dir"
ca_dir=$(cd "$ca_dir" && pwd)
[ -f "$ca_dir/.gitignore" ] || printf '*\n' > "$ca_dir/.gitignore"
cd "$dir"
umask 077
cakey="$ca_dir/ca.key"

if [ ! -f "$cakey" ] || [ ! -f ca.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 3650 \
    -subj "/O=wattkeeper/CN=wattkeeper $site local CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$cakey" -out ca.crt 2>/dev/null
fi

san="DNS:mosquitto,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  case "$name" in
    *[!0-9.]*) san="$san,DNS:$name" ;;
    *) san="$san,IP:$name" ;;
  esac
done
ext=$(mktemp)
trap 'rm -f "$ext" server.csr' EXIT
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" > "$ext"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
  -subj "/O=wattkeeper/CN=mosquitto ($site)" -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey "$cakey" -CAcreateserial -sha256 -days 825 \
  -extfile "$ext" -out server.crt 2>/dev/null
rm -f ca.srl
chmod 600 "$cakey"
chmod 644 ca.crt server.crt
# The broker reads its key after dropping root: readable by its group (chown it to the broker's
# user, uid 1883 in the eclipse-mosquitto image, or `mosquitto` on bare metal).
chmod 640 server.key
echo "site $site: CA $dir/ca.crt (its key: $cakey); broker certificate for $san (valid 825 days)"
