"""The Kafka bridge: the only place that imports aiokafka. aiokafka runs on its own
asyncio loop in a thread; everything here is reached from trio (docs/design.md,
"Kafka bridge")."""

from kstate.bridge.admin import TopicInfo as TopicInfo
from kstate.bridge.bridge import KafkaBridge as KafkaBridge
from kstate.bridge.bridge import open_bridge as open_bridge
from kstate.bridge.config import KafkaConfig as KafkaConfig
from kstate.bridge.errors import BrokerUnavailable as BrokerUnavailable
from kstate.bridge.errors import GroupRefused as GroupRefused
from kstate.bridge.errors import InstanceFenced as InstanceFenced
from kstate.bridge.errors import KafkaAuthFailed as KafkaAuthFailed
from kstate.bridge.errors import KafkaNotAuthorized as KafkaNotAuthorized
from kstate.bridge.errors import OffsetPastEnd as OffsetPastEnd
from kstate.bridge.errors import PartitionsChanged as PartitionsChanged
from kstate.bridge.errors import RecordTooLarge as RecordTooLarge
from kstate.bridge.errors import TopicDeleted as TopicDeleted
from kstate.bridge.errors import TopicRefused as TopicRefused
from kstate.bridge.lease import Lease as Lease
from kstate.bridge.reader import BEGINNING as BEGINNING
from kstate.bridge.reader import EACH_FROM_BEGINNING as EACH_FROM_BEGINNING
from kstate.bridge.reader import PAUSED as PAUSED
from kstate.bridge.reader import Reader as Reader
