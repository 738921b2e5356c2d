"""The system of record. Imports nothing of ours; importing it registers every table and check."""

from registry import validation as _validation
from registry.budget import Actual, BudgetExplanation, BudgetLine, CostCentre, LineKind
from registry.compliance import (
    Audit,
    Control,
    ControlTest,
    Criticality,
    Evidence,
    Framework,
    TestResult,
)
from registry.continuity import (
    AckStatus,
    ContinuityPlan,
    Drill,
    DrillMeasure,
    DrillParticipant,
    DrillProgram,
    DrillStatus,
    Facility,
    RosterEntry,
    RosterRole,
)
from registry.db import get_engine, reset_engines, session
from registry.errors import RegistryValidationError
from registry.findings import ActionStatus, CorrectiveAction, Finding, FindingStatus
from registry.kpis import Direction, KpiDefinition, KpiMeasurement, OperationsReport
from registry.lease import EngineLease
from registry.occasions import Occasion, OccasionStatus
from registry.outbox import DeliveryStatus, Notification
from registry.people import Person, Team
from registry.risk import (
    AcceptanceStatus,
    Risk,
    RiskAcceptance,
    RiskAssessment,
    RiskCategory,
    RiskControl,
    RiskIndicator,
    RiskLevel,
    RiskMatrix,
    RiskRescore,
    Treatment,
)
from registry.steps import HumanStep, StepLink, StepStatus
from registry.supply import (
    ContractNotice,
    Delivery,
    InventoryItem,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    Standing,
    Vendor,
    VendorScorecard,
)
from registry.trail import AuditEvent

_validation.install()

__all__ = [
    "Audit", "AuditEvent", "Control", "ControlTest", "CorrectiveAction", "Criticality",
    "DeliveryStatus", "EngineLease", "Evidence", "Finding", "Framework", "HumanStep", "Notification", "Person",
    "RegistryValidationError", "StepLink", "StepStatus", "Team", "TestResult", "get_engine", "reset_engines",
    "session", "ContractNotice", "Delivery", "InventoryItem", "PurchaseRequest", "PurchaseRequestLine",
    "RequestStatus", "Standing", "Vendor", "VendorScorecard", "AckStatus", "ContinuityPlan", "Drill",
    "DrillMeasure", "DrillParticipant", "DrillProgram", "DrillStatus", "Facility", "RosterEntry", "RosterRole",
    "Direction", "KpiDefinition", "KpiMeasurement", "OperationsReport", "ActionStatus", "FindingStatus",
    "Occasion", "OccasionStatus", "Actual", "BudgetExplanation", "BudgetLine", "CostCentre", "LineKind",
    "AcceptanceStatus", "Risk", "RiskAcceptance", "RiskAssessment", "RiskCategory", "RiskControl", "RiskIndicator",
    "RiskLevel", "RiskMatrix", "RiskRescore", "Treatment",
]
