// expect: BCP258
// The container image has no default.
using '../../../infra/main.bicep'

param environmentName = 'dev'
param dnsZoneName = 'azhexgate.example.com'
param operatorCidrs = [
  '203.0.113.0/24'
]
