// Custom host names of the app: *.<domain> and api.<domain>, bound with SNI to a certificate
// already uploaded to the app (a wildcard certificate covers both; App Service managed
// certificates do not cover wildcards). Deployed after the DNS records exist.

@description('Name of the web app.')
param siteName string

@description('Public domain.')
param domain string

@description('Thumbprint of the certificate (on the app) that covers *.<domain>; empty binds without TLS.')
param certificateThumbprint string = ''

resource site 'Microsoft.Web/sites@2023-12-01' existing = {
  name: siteName
}

resource wildcard 'Microsoft.Web/sites/hostNameBindings@2023-12-01' = {
  parent: site
  name: '*.${domain}'
  properties: {
    siteName: siteName
    hostNameType: 'Verified'
    sslState: empty(certificateThumbprint) ? 'Disabled' : 'SniEnabled'
    thumbprint: empty(certificateThumbprint) ? null : certificateThumbprint
  }
}

resource api 'Microsoft.Web/sites/hostNameBindings@2023-12-01' = {
  parent: site
  name: 'api.${domain}'
  properties: {
    siteName: siteName
    hostNameType: 'Verified'
    sslState: empty(certificateThumbprint) ? 'Disabled' : 'SniEnabled'
    thumbprint: empty(certificateThumbprint) ? null : certificateThumbprint
  }
  dependsOn: [
    wildcard
  ]
}
