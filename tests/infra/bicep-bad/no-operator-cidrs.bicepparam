// expect: BCP333
// The api host and the SCM site need at least one operator CIDR (@minLength(1)).
using '../../../infra/main.bicep'

param environmentName = 'dev'
param dnsZoneName = 'azhexgate.example.com'
param image = 'azhexgate.azurecr.io/azhexgate-server:1.0.0'
param operatorCidrs = []
