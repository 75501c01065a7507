// expect: BCP033
// An environment outside @allowed must not compile.
using '../../../infra/main.bicep'

param environmentName = 'qa'
param dnsZoneName = 'azhexgate.example.com'
param image = 'azhexgate.azurecr.io/azhexgate-server:1.0.0'
param operatorCidrs = [
  '203.0.113.0/24'
]
