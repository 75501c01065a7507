// Records in an existing Azure DNS zone: the wildcard tunnel host and the api host point at the
// App Service app (or at Front Door, when it is in front), plus the asuid TXT records App Service
// checks before it binds the custom host names.

@description('Name of the DNS zone (the public domain), in this resource group.')
param zoneName string

@description('Sub-domain of the deployment inside the zone; empty when the zone is the domain.')
param subdomain string = ''

@description('Host name the records point at (the app default host name or the Front Door endpoint).')
param target string

@description('App Service custom domain verification id.')
param verificationId string

@description('TTL of the records in seconds.')
param ttl int = 300

var suffix = empty(subdomain) ? '' : '.${subdomain}'

resource zone 'Microsoft.Network/dnsZones@2018-05-01' existing = {
  name: zoneName
}

resource wildcard 'Microsoft.Network/dnsZones/CNAME@2018-05-01' = {
  parent: zone
  name: '*${suffix}'
  properties: {
    TTL: ttl
    CNAMERecord: {
      cname: target
    }
  }
}

resource api 'Microsoft.Network/dnsZones/CNAME@2018-05-01' = {
  parent: zone
  name: 'api${suffix}'
  properties: {
    TTL: ttl
    CNAMERecord: {
      cname: target
    }
  }
}

resource wildcardVerification 'Microsoft.Network/dnsZones/TXT@2018-05-01' = {
  parent: zone
  name: 'asuid${suffix}'
  properties: {
    TTL: ttl
    TXTRecords: [
      {
        value: [
          verificationId
        ]
      }
    ]
  }
}

resource apiVerification 'Microsoft.Network/dnsZones/TXT@2018-05-01' = {
  parent: zone
  name: 'asuid.api${suffix}'
  properties: {
    TTL: ttl
    TXTRecords: [
      {
        value: [
          verificationId
        ]
      }
    ]
  }
}

@description('Fully qualified tunnel wildcard host.')
output wildcardHost string = '*${suffix}.${zoneName}'

@description('Fully qualified api host.')
output apiHost string = 'api${suffix}.${zoneName}'
