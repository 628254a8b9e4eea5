# Sourced by scripts/test.sh: installs slapd and ldap-utils if missing and starts a throwaway
# OpenLDAP server (slapd) configured in a temporary directory, listening on a free loopback port;
# stops it on exit. Suffix dc=writ,dc=test, root DN cn=admin,dc=writ,dc=test with a random
# password kept in a 0600 file (slapd holds only its salted hash). Exports WRIT_TEST_LDAP_URL,
# WRIT_TEST_LDAP_BIND_DN and WRIT_TEST_LDAP_PASSWORD_FILE. Needs `log`, `apt_install`,
# `on_exit` and `free_port`.

if ! command -v slapd >/dev/null 2>&1 && [ ! -x /usr/sbin/slapd ]; then
    log "installing slapd and ldap-utils"
    # The package's own system instance is neither started nor used.
    apt_install slapd ldap-utils || { echo "error: slapd is required and could not be installed" >&2; exit 1; }
fi
command -v ldapadd >/dev/null 2>&1 || apt_install ldap-utils \
    || { echo "error: ldap-utils is required and could not be installed" >&2; exit 1; }
LDAPDIR=$(mktemp -d)
LDAPPORT=$(free_port)
stop_slapd() {
    if [ -f "$LDAPDIR/slapd.pid" ]; then kill "$(cat "$LDAPDIR/slapd.pid")" 2>/dev/null || true; fi
    rm -rf "$LDAPDIR"
}
on_exit stop_slapd
mkdir -p "$LDAPDIR/slapd.d" "$LDAPDIR/data"
random_secret "$LDAPDIR/admin.pass"
LDAPHASH=$(/usr/sbin/slappasswd -T "$LDAPDIR/admin.pass")
cat > "$LDAPDIR/config.ldif" <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $LDAPDIR/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
include: file:///etc/ldap/schema/nis.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: dc=writ,dc=test
olcRootDN: cn=admin,dc=writ,dc=test
olcRootPW: $LDAPHASH
olcDbDirectory: $LDAPDIR/data
olcDbMaxSize: 104857600
olcDbIndex: objectClass eq
olcDbIndex: member eq
olcDbIndex: uniqueMember eq
olcAccess: {0}to * by * none
LDIF
cat > "$LDAPDIR/base.ldif" <<LDIF
dn: dc=writ,dc=test
objectClass: dcObject
objectClass: organization
dc: writ
o: Writ tests
LDIF
/usr/sbin/slapadd -q -n0 -F "$LDAPDIR/slapd.d" -l "$LDAPDIR/config.ldif" >/dev/null
/usr/sbin/slapadd -q -n1 -F "$LDAPDIR/slapd.d" -l "$LDAPDIR/base.ldif" >/dev/null
log "starting slapd on 127.0.0.1:$LDAPPORT"
/usr/sbin/slapd -F "$LDAPDIR/slapd.d" -h "ldap://127.0.0.1:$LDAPPORT/" \
    || { echo "error: slapd did not start" >&2; exit 1; }
for _ in $(seq 50); do
    ldapsearch -x -H "ldap://127.0.0.1:$LDAPPORT/" -D cn=admin,dc=writ,dc=test -y "$LDAPDIR/admin.pass" \
        -b dc=writ,dc=test -s base >/dev/null 2>&1 && break
    sleep 0.1
done
ldapsearch -x -H "ldap://127.0.0.1:$LDAPPORT/" -D cn=admin,dc=writ,dc=test -y "$LDAPDIR/admin.pass" \
    -b dc=writ,dc=test -s base >/dev/null || { echo "error: slapd does not answer" >&2; exit 1; }
export WRIT_TEST_LDAP_URL="ldap://127.0.0.1:$LDAPPORT"
export WRIT_TEST_LDAP_BIND_DN="cn=admin,dc=writ,dc=test"
export WRIT_TEST_LDAP_PASSWORD_FILE="$LDAPDIR/admin.pass"
